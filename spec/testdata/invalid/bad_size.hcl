volume "data" {
  size = "10 parsecs"
}
