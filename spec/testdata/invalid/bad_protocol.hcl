port_forward "dns" {
  host_port   = 5353
  protocol    = "icmp"
  target      = "10.0.0.10"
  target_port = 53
}
