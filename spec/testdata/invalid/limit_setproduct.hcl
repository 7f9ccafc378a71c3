locals {
  a = range(150)
  p = setproduct(local.a, local.a, local.a)
}

output "n" {
  value = length(local.p)
}
