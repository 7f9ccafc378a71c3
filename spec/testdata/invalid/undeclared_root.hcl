volume "data" {
  size = var.size
}
