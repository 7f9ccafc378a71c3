image "base" {
  source = "/var/lib/images/base.qcow2"
}

server "web" {
  image = image.base.id
  ready {
    tcp_port = 22
    http_port = 80
  }
}

server "db" {
  image = image.base.id
  ready {
    signal   = true
    console  = "ready"
    tcp_port = 5432
  }
}
