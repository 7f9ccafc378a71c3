volume "data" {
  count    = 2
  for_each = toset(["a"])
  size     = "1GiB"
}
