output "s" {
  value = format("%0999999999d", 1)
}
