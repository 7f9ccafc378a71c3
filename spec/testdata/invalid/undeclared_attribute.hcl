network "lan" {
  cidr = "10.0.0.0/24"
}

output "mask" {
  value = network.lan.netmask
}
