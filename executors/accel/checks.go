package accel

import (
	"encoding/xml"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"
)

// DevicePath is the KVM device.
const DevicePath = "/dev/kvm"

// kvmGetAPIVersion is KVM_GET_API_VERSION, _IO(KVMIO=0xAE, 0x00); every
// KVM since Linux 2.6.22 answers 12.
const (
	kvmGetAPIVersion = 0xAE00
	kvmAPIVersion    = 12
)

// checkDevice opens the KVM device read-write, as QEMU does, and asks its
// API version. The error is one sentence for a Reason.
func checkDevice(path string) error {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%s is missing", path)
	}
	if err != nil {
		return fmt.Errorf("%s cannot be opened read-write: %v", path, err)
	}
	defer unix.Close(fd)
	v, err := unix.IoctlRetInt(fd, kvmGetAPIVersion)
	if err != nil {
		return fmt.Errorf("%s does not answer KVM_GET_API_VERSION: %v", path, err)
	}
	if v != kvmAPIVersion {
		return fmt.Errorf("%s answers KVM API version %d, not %d", path, v, kvmAPIVersion)
	}
	return nil
}

// checkCaps asks libvirt whether it offers kvm domains for kiln's machine
// (x86_64, pc). libvirt refuses when its QEMU lacks KVM support or cannot
// use /dev/kvm.
func checkCaps(conn *libvirt.Connect) error {
	doc, err := conn.GetDomainCapabilities("", "x86_64", "pc", "kvm", 0)
	if err != nil {
		return fmt.Errorf("libvirt offers no kvm domains: %s", libvirtMessage(err))
	}
	var caps libvirtxml.DomainCaps
	if err := xml.Unmarshal([]byte(doc), &caps); err != nil {
		return fmt.Errorf("libvirt's domain capabilities for kvm cannot be read: %v", err)
	}
	if caps.Domain != "kvm" {
		return fmt.Errorf("libvirt answers domain capabilities of type %q when asked for kvm", caps.Domain)
	}
	return nil
}
