image "base" {
  source = "/var/lib/images/base.qcow2"
}

server "a" {
  image = image.base.id
  ready {
    tcp_port = 0
  }
}

server "b" {
  image = image.base.id
  ready {
    http_port = 65536
  }
}

server "c" {
  image = image.base.id
  ready {
    tcp_port = 22.5
  }
}

server "d" {
  image = image.base.id
  ready {
    tcp_port = "ssh"
  }
}
