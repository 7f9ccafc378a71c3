image "base" {
  source = "/var/lib/images/base.qcow2"
}

server "web" {
  image    = image.base.id
  cpu_mode = "host"
}
