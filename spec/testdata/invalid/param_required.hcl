param "token" {
  type = string
}

output "t" {
  value = param.token
}
