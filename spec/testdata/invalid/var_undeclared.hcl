param "size" {
  default = "1GiB"
}
