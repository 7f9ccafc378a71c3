param "cpus" {
  type    = number
  default = "many"
}
