image "base" {
  source = "/var/lib/images/base.qcow2"
}

server "web" {
  count = 2
  image = image.base.id
}

output "third" {
  value = server.web[2].address
}
