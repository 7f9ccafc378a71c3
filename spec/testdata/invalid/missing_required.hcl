image "base" {
  sha256 = "5f1c3e0b7a1d2c4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6"
}
