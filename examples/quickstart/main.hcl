# The smallest useful stack: one image, one NAT network with DHCP, one server.
#
#   kiln validate examples/quickstart
#   kiln plan examples/quickstart
#
#   kiln apply examples/quickstart -var image_path=$PWD/build/images/kiln-test-guest.qcow2
#
# `make test-image` builds the tiny guest this uses; `make demo` applies it
# in a private network namespace (scripts/demo.sh). Point image_path at any
# other qcow2 with -var image_path=/path.

param "image_path" {
  type        = string
  default     = "/var/lib/kiln/images/kiln-test-guest.qcow2"
  description = "Absolute path of the guest image on the host."
}

image "guest" {
  source = param.image_path
  format = "qcow2"
}

network "lan" {
  cidr = "10.42.0.0/24"
  nat  = true
  dhcp = true
}

server "hello" {
  image  = image.guest.id
  cpus   = 1
  memory = "256MiB"

  network "lan" {
    address = cidrhost(network.lan.cidr, 10)
  }
}

output "address" {
  value       = server.hello.address
  description = "The server's address on lan."
}
