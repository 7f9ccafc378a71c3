image "base" {
  source = "/srv/images/base.qcow2"
}

network "n" {
  cidr = "10.9.0.0/24"
}

volume "v" {
  size = "1GiB"
}

server "web" {
  image   = network.n.id
  volumes = [volume.v.id, network.n.id]
  network "n" {
    address = volume.v.id
  }
}

server "db" {
  image   = image.base.id
  volumes = [image.base.id]
}
