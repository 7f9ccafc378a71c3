#!/bin/sh
# The test guest's answer on port 80, computed per request so that hot-plugged
# disks show: its hostname, its address and the block devices the kernel sees.
printf 'Content-Type: text/plain\r\n\r\n'
echo "hostname=$(hostname)"
echo "address=$(cat /run/kiln-address 2>/dev/null)"
echo "instance-id=$(cat /run/kiln-instance-id 2>/dev/null)"
echo "block=$(ls /sys/block | tr '\n' ' ' | sed 's/ *$//')"
