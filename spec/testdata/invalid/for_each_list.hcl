volume "data" {
  for_each = ["a", "b"]
  size     = "1GiB"
}
