image "base" {
  source = "https://images.example.org/base.qcow2"
  sha256 = "5f1c"
}
