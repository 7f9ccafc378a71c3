volume "data" {
  size = "${count.index + 1}GiB"
}
