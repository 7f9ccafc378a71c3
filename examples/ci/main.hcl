# One disposable environment per CI job:
#
#   kiln plan examples/ci -stack ci-$CI_JOB_ID -var job_id=$CI_JOB_ID -json
#
# Every name and port derives from job_id, so parallel jobs on one host do not
# collide. The outputs are meant for `kiln output -json`.

param "job_id" {
  type        = number
  description = "The CI job's number; picks the subnet and the forwarded port."
  default     = 1
  validation {
    condition     = param.job_id >= 0 && param.job_id < 4096
    error_message = "job_id must be between 0 and 4095 (it selects one of 4096 subnets)."
  }
}

param "image_path" {
  type    = string
  default = "/var/lib/kiln/images/kiln-test-guest.qcow2"
}

param "commit" {
  type        = string
  default     = "unknown"
  description = "The commit under test, passed to the guest."
}

param "registry_token" {
  type      = string
  default   = ""
  sensitive = true
}

locals {
  # 10.64.0.0/12 split into /24s: job 0 -> 10.64.0.0/24, job 257 -> 10.65.1.0/24.
  cidr      = cidrsubnet("10.64.0.0/12", 12, param.job_id)
  host_port = 20000 + param.job_id
}

image "guest" {
  source = param.image_path
}

network "job" {
  cidr = local.cidr
  nat  = true
  dhcp = true
}

server "runner" {
  image  = image.guest.id
  cpus   = 2
  memory = "1GiB"
  disk   = "10GiB"

  network "job" {
    address = cidrhost(network.job.cidr, 10)
  }

  user_data = jsonencode({
    commit         = param.commit
    registry_token = param.registry_token
  })
}

port_forward "ssh" {
  host_port   = local.host_port
  protocol    = "tcp"
  target      = server.runner.address
  target_port = 22
}

output "runner_address" {
  value = server.runner.address
}

output "ssh_port" {
  value = local.host_port
}

output "endpoint" {
  value = {
    host = "127.0.0.1"
    port = local.host_port
    cidr = network.job.cidr
  }
}
