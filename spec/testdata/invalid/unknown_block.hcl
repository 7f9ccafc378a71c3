network "lan" {
  cidr = "10.0.0.0/24"
}

router "edge" {
  network = network.lan.id
}
