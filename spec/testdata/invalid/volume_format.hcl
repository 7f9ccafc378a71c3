volume "data" {
  size   = "1GiB"
  format = "vmdk"
}
