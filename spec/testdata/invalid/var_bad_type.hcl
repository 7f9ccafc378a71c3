param "count" {
  type    = number
  default = 1
}
