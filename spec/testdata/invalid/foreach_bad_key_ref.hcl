volume "v" {
  for_each = toset(["a", "b"])
  size     = "1GiB"
}

output "c" {
  value = volume.v["c"].id
}
