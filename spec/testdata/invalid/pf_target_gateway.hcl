network "lan" {
  cidr = "10.0.0.0/24"
}

server "web" {
  image = "img"
  network "lan" {}
}

# The gateway is the host itself.
port_forward "host" {
  host_port   = 18080
  target      = network.lan.gateway
  target_port = 22
}

# An address still unknown, from a server: fine.
port_forward "web" {
  host_port   = 18081
  target      = server.web.address
  target_port = 80
}

# An address still unknown, from something else than a server.
port_forward "image" {
  host_port   = 18082
  target      = image.i.id
  target_port = 80
}

image "i" {
  source = "https://example.org/i.qcow2"
}
