network "v6" {
  cidr = "fd00:10::/64"
}
