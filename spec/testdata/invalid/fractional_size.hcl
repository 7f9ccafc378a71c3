volume "data" {
  size = "1.3K"
}
