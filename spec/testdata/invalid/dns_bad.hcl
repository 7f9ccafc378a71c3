network "lan" {
  cidr = "10.0.0.0/24"
  dns  = ["1.1.1.1", "resolver"]
}
