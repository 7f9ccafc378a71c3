param "web_count" {
  type    = number
  default = 2
  validation {
    condition     = param.web_count >= 1 && param.web_count <= 20
    error_message = "web_count must be between 1 and 20."
  }
}

image "base" {
  source = "https://images.example.org/debian-12-genericcloud-amd64.qcow2" # or a local path
  sha256 = "5f1c3e0b7a1d2c4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6"
}

network "lan" {
  cidr = "10.20.0.0/24"
  nat  = true            # egress through the host (MASQUERADE)
  dhcp = true            # dnsmasq with a fixed address for every server
}

volume "data" {
  count = param.web_count
  size  = "2GiB"
}

server "web" {
  count     = param.web_count
  image     = image.base.id
  cpus      = 1
  memory    = "512MiB"
  disk      = "4GiB"                       # copy-on-write overlay on the cached image
  network "lan" { address = cidrhost(network.lan.cidr, 10 + count.index) }
  volumes   = [volume.data[count.index].id]
  user_data = templatefile("cloud-init.yaml", { index = count.index })
}

port_forward "http" {
  host_port   = 8080
  target      = server.web[0].address
  target_port = 80
}

output "web_addresses" { value = server.web[*].address }
