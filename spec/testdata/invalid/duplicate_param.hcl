param "size" {
  default = "1GiB"
}

param "size" {
  default = "2GiB"
}
