image "base" {
  source = "/var/lib/images/base.qcow2"
}

network "lan" {
  cidr = "10.0.0.0/24"
}

server "web" {
  count = 2
  image = image.base.id
  network "lan" { address = cidrhost(network.lan.cidr, 10) }
}
