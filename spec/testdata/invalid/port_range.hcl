port_forward "http" {
  host_port   = 70000
  target      = "10.0.0.10"
  target_port = 0
}
