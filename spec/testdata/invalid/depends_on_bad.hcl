volume "data" {
  size       = "1GiB"
  depends_on = [network.nowhere]
}
