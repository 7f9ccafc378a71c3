image "base" {
  source = "/var/lib/images/base.qcow2"
}

network "lan" {
  cidr = "10.0.0.0/24"
}

server "web" {
  image = image.base.id
  network "lan" { address = "10.0.0.255" }
}
