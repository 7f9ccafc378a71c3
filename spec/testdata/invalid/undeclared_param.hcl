volume "data" {
  size = param.data_size
}
