param "WebCount" {
  default = 1
}
