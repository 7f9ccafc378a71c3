image "base" {
  source = "/srv/images/base.qcow2"
}

volume "a" {
  size = "1GiB"
}

volume "b" {
  size = "1GiB"
}

server "web" {
  image   = image.base.id
  volumes = ["p2-web-volume-data", volume.a.id]
}

server "db" {
  image   = image.base.id
  volumes = concat([volume.b.id], [volume.b.id])
}
