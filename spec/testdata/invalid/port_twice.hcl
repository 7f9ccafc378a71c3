port_forward "a" {
  host_port   = 8080
  target      = "10.0.0.10"
  target_port = 80
}

port_forward "b" {
  host_port   = 8080
  protocol    = "tcp"
  target      = "10.0.0.11"
  target_port = 80
}
