# A three-tier web application: a load balancer reachable from outside through
# a port forward, web servers on a public network, and databases on a private
# network that has no route out.
#
#   kiln plan examples/web -var web_count=3

param "web_count" {
  type        = number
  default     = 2
  description = "Number of web servers."
  validation {
    condition     = param.web_count >= 1 && param.web_count <= 20
    error_message = "web_count must be between 1 and 20."
  }
}

param "image_source" {
  type        = string
  default     = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
  description = "URL or absolute path of the Debian 12 cloud image."
}

param "ssh_keys" {
  type        = list(string)
  default     = []
  description = "Public keys allowed to log in as the default user."
}

param "db_hosts" {
  type        = map(number)
  default     = { primary = 50, replica = 51 }
  description = "Database servers to run, by name, with their host number on the back network."
}

param "http_port" {
  type    = number
  default = 8080
}

locals {
  web_base = 10
  domain   = "web.internal"
}

image "debian" {
  source = param.image_source
  format = "qcow2"
}

network "front" {
  cidr = "10.30.0.0/24"
  nat  = true
  dhcp = true
  dns  = ["1.1.1.1", "9.9.9.9"]
}

network "back" {
  cidr = "10.30.1.0/24"
  nat  = false
  dhcp = true
}

volume "web_data" {
  count = param.web_count
  size  = "2GiB"
}

volume "db_data" {
  for_each = param.db_hosts
  size     = "10GiB"
  format   = "qcow2"

  lifecycle {
    prevent_destroy = true
  }
}

server "lb" {
  image    = image.debian.id
  cpus     = 1
  memory   = "512MiB"
  disk     = "4GiB"
  ssh_keys = param.ssh_keys

  network "front" {
    address = cidrhost(network.front.cidr, 5)
  }

  user_data = templatefile("cloud-init.yaml", {
    hostname = "lb"
    domain   = local.domain
    role     = "lb"
    backends = [for i in range(param.web_count) : cidrhost(network.front.cidr, local.web_base + i)]
  })

  ready {
    http_port = 80
    timeout   = "10m"
  }

  depends_on = [server.web]
}

server "web" {
  count    = param.web_count
  image    = image.debian.id
  cpus     = 1
  memory   = "1GiB"
  disk     = "8GiB"
  volumes  = [volume.web_data[count.index].id]
  ssh_keys = param.ssh_keys

  network "front" {
    address = cidrhost(network.front.cidr, local.web_base + count.index)
  }
  network "back" {
    address = cidrhost(network.back.cidr, local.web_base + count.index)
  }

  user_data = templatefile("cloud-init.yaml", {
    hostname = format("web-%d", count.index)
    domain   = local.domain
    role     = "web"
    backends = []
  })

  # Done when nginx answers (cloud-init installs it at first boot), so the
  # load balancer is made only once its backends serve.
  ready {
    http_port = 80
    timeout   = "10m"
  }

  lifecycle {
    create_before_destroy = true
  }
}

server "db" {
  for_each = param.db_hosts
  image    = image.debian.id
  cpus     = 2
  memory   = "2GiB"
  disk     = "16GiB"
  volumes  = [volume.db_data[each.key].id]
  ssh_keys = param.ssh_keys

  network "back" {
    address = cidrhost(network.back.cidr, each.value)
  }

  user_data = templatefile("cloud-init.yaml", {
    hostname = "db-${each.key}"
    domain   = local.domain
    role     = "db"
    backends = []
  })

  # Done when cloud-init has finished (PostgreSQL installed): it says so on
  # the serial console.
  ready {
    console = "Cloud-init v\\. \\S+ finished"
    timeout = "10m"
  }

  lifecycle {
    ignore_changes = [user_data]
  }
}

port_forward "http" {
  host_port   = param.http_port
  protocol    = "tcp"
  target      = server.lb.address
  target_port = 80
}

output "url" {
  value = "http://localhost:${param.http_port}/"
}

output "web_addresses" {
  value = server.web[*].address
}

output "db_addresses" {
  value = { for k, s in server.db : k => s.address }
}
