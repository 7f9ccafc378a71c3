network "lan" {
  cidr = "10.0.0.0/24"
}

server "web" {
  image = "img"
  network "lan" {
    address = "10.0.0.10"
  }
}

# Another tenant's guest, or anything else on the host's routes.
port_forward "other" {
  host_port   = 18080
  target      = "10.0.0.99"
  target_port = 80
}

# The stack's own server by its literal address is fine.
port_forward "own" {
  host_port   = 18081
  target      = "10.0.0.10"
  target_port = 80
}
