output "9lives" {
  value = 9
}
