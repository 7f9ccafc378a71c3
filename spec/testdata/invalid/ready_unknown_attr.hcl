image "base" {
  source = "/var/lib/images/base.qcow2"
}

server "web" {
  image = image.base.id
  ready = {
    tcp_port = 22
  }
}

server "db" {
  image = image.base.id
  ready {
    port = 5432
  }
}
