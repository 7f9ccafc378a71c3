volume "data" {
  size = each.value
}
