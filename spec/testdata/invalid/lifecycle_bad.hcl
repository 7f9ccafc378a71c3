volume "data" {
  size = "1GiB"
  lifecycle {
    ignore_changes = [colour]
  }
}
