image "base" {
  source = "/var/lib/images/base.qcow2"
}

server "a" {
  image = image.base.id
  ready {
    console = ""
  }
}

server "b" {
  image = image.base.id
  ready {
    console = "(login"
  }
}

server "c" {
  image = image.base.id
  ready {
    console = "a(?=b)"
  }
}
