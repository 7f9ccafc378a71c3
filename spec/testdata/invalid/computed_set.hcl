network "lan" {
  cidr    = "10.0.0.0/24"
  gateway = "10.0.0.254"
}
