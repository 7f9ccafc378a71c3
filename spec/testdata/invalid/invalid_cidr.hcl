network "lan" {
  cidr = "10.0.0.300/24"
}
