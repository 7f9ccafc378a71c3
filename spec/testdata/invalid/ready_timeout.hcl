image "base" {
  source = "/var/lib/images/base.qcow2"
}

server "a" {
  image = image.base.id
  ready {
    signal  = true
    timeout = "5 minutes"
  }
}

server "b" {
  image = image.base.id
  ready {
    signal  = true
    timeout = 300
  }
}

server "c" {
  image = image.base.id
  ready {
    signal  = true
    timeout = "500ms"
  }
}

server "d" {
  image = image.base.id
  ready {
    signal  = true
    timeout = "24h1s"
  }
}

server "e" {
  image = image.base.id
  ready {
    signal  = true
    timeout = "1500ms"
  }
}

server "f" {
  image = image.base.id
  ready {
    signal  = true
    timeout = "-5m"
  }
}
