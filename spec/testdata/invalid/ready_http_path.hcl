image "base" {
  source = "/var/lib/images/base.qcow2"
}

server "a" {
  image = image.base.id
  ready {
    tcp_port  = 22
    http_path = "/healthz"
  }
}

server "b" {
  image = image.base.id
  ready {
    http_port = 80
    http_path = "healthz"
  }
}

server "c" {
  image = image.base.id
  ready {
    http_port = 80
    http_path = "/health check"
  }
}

server "d" {
  image = image.base.id
  ready {
    http_port = 80
    http_path = "/health\ncheck"
  }
}
