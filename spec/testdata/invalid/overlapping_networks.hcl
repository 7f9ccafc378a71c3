network "a" {
  cidr = "10.0.0.0/16"
}

network "b" {
  cidr = "10.0.5.0/24"
}
