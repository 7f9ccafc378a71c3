image "base" {
  source = "/var/lib/images/base.qcow2"
}

server "web" {
  count = 3
  image = image.base.id
  ready {
    http_port = 65534 + count.index
  }
}
