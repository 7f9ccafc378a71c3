image "base" {
  source = "/var/lib/images/base.qcow2"
}

server "web" {
  image = image.base.id
  ready {
    signal = false
  }
}
