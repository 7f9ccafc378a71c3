volume "data" {
  count = 1.5
  size  = "1GiB"
}
