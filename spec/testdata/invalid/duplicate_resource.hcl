network "lan" {
  cidr = "10.0.0.0/24"
}

network "lan" {
  cidr = "10.1.0.0/24"
}
