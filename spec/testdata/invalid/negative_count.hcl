volume "data" {
  count = -1
  size  = "1GiB"
}
