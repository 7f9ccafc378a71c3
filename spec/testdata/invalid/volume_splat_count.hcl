image "base" {
  source = "/srv/images/base.qcow2"
}

volume "data" {
  count = 2
  size  = "1GiB"
}

server "web" {
  count   = 2
  image   = image.base.id
  volumes = volume.data[*].id
}

server "db" {
  image   = image.base.id
  volumes = [volume.data[0].id, volume.data[0].id]
}
