param "web_count" {
  type    = number
  default = 50
  validation {
    condition     = param.web_count >= 1 && param.web_count <= 20
    error_message = "web_count must be between 1 and 20."
  }
}
