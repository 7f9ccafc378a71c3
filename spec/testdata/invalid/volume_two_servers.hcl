image "base" {
  source = "/srv/images/base.qcow2"
}

volume "data" {
  size = "1GiB"
}

server "a" {
  image   = image.base.id
  volumes = [volume.data.id]
}

server "b" {
  image   = image.base.id
  volumes = [volume.data.id]
}
