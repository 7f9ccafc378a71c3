image "base" {
  source = "/var/lib/images/base.qcow2"
}

volume "data" {
  count = length(image.base.id)
  size  = "1GiB"
}
