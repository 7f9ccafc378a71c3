image "base" {
  source = "/var/lib/images/base.qcow2"
}

server "web" {
  image     = image.base.id
  user_data = file("../../secrets.txt")
}
