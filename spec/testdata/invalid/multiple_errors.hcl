network "lan" {
  cidr = "10.0.0.0/33"
}

volume "data" {
  size = "lots"
}

port_forward "p" {
  host_port   = 22
  protocol    = "sctp"
  target      = "10.0.0.10"
  target_port = 22
}
