image "base" {
  source = "/var/lib/images/base.qcow2"
}

server "a" {
  image     = image.base.id
  user_data = server.b.address
}

server "b" {
  image     = image.base.id
  user_data = server.a.address
}
