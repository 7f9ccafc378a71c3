port_forward "http" {
  host_port   = 8080
  target      = "web"
  target_port = 80
}
