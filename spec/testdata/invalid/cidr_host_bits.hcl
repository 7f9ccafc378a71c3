network "lan" {
  cidr = "10.0.0.5/24"
}
