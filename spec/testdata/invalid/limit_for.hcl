locals {
  a = [for i in range(1000) : i]
  b = [for x in local.a : [for y in local.a : [for z in local.a : z]]]
}

output "n" {
  value = length(local.b)
}
