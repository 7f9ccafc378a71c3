network "lan" {
  cidr = "10.0.0.0/24"
}

output "gw" {
  value = network.lan[0].gateway
}
