image "base" {
  source = "images/base.qcow2"
}
