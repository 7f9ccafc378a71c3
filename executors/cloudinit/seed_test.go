package cloudinit

import (
	"bytes"
	"testing"
)

func TestFiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		seed Seed
		want map[string]string
	}{
		{
			name: "static",
			seed: Seed{
				InstanceID: "kiln-web-0-1a2b",
				Hostname:   "web-0",
				SSHKeys:    []string{"ssh-ed25519 AAAAC3Nza user@host"},
				MAC:        "52:54:00:AB:CD:EF",
				Address:    "10.0.0.10/24",
				Gateway:    "10.0.0.1",
				DNS:        []string{"10.0.0.1", "9.9.9.9"},
			},
			want: map[string]string{
				"meta-data": `instance-id: "kiln-web-0-1a2b"
local-hostname: "web-0"
public-keys:
  - "ssh-ed25519 AAAAC3Nza user@host"
`,
				"user-data": `#cloud-config
ssh_authorized_keys:
  - "ssh-ed25519 AAAAC3Nza user@host"
`,
				"network-config": `version: 2
ethernets:
  eth0:
    match:
      macaddress: "52:54:00:ab:cd:ef"
    set-name: eth0
    addresses:
      - "10.0.0.10/24"
    routes:
      - to: "0.0.0.0/0"
        via: "10.0.0.1"
    nameservers:
      addresses:
        - "10.0.0.1"
        - "9.9.9.9"
`,
			},
		},
		{
			name: "dhcp, given user-data, instance id from hostname",
			seed: Seed{Hostname: "db-1", UserData: "#!/bin/sh\necho hi\n"},
			want: map[string]string{
				"meta-data":      "instance-id: \"db-1\"\nlocal-hostname: \"db-1\"\n",
				"user-data":      "#!/bin/sh\necho hi\n",
				"network-config": "version: 2\nethernets:\n  eth0:\n    match:\n      name: \"e*\"\n    dhcp4: true\n",
			},
		},
		{
			name: "default user-data",
			seed: Seed{InstanceID: "i-\"quoted\"", Address: "192.168.1.5/16"},
			want: map[string]string{
				"meta-data":      "instance-id: \"i-\\\"quoted\\\"\"\n",
				"user-data":      DefaultUserData,
				"network-config": "version: 2\nethernets:\n  eth0:\n    match:\n      name: \"e*\"\n    addresses:\n      - \"192.168.1.5/16\"\n",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.seed.Files()
			if len(got) != len(tc.want) {
				t.Errorf("got %d files, want %d", len(got), len(tc.want))
			}
			for name, want := range tc.want {
				if string(got[name]) != want {
					t.Errorf("%s:\n%s\nwant:\n%s", name, got[name], want)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Seed{Hostname: "web-0", MAC: "52:54:00:00:00:01", Address: "10.0.0.10/24", Gateway: "10.0.0.1", DNS: []string{"10.0.0.1"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid seed refused: %v", err)
	}
	for name, mutate := range map[string]func(*Seed){
		"no names":          func(s *Seed) { s.Hostname = "" },
		"hostname space":    func(s *Seed) { s.Hostname = "web 0" },
		"hostname newline":  func(s *Seed) { s.Hostname = "web\n0" },
		"instance newline":  func(s *Seed) { s.InstanceID = "a\nb" },
		"bad mac":           func(s *Seed) { s.MAC = "52:54" },
		"address not cidr":  func(s *Seed) { s.Address = "10.0.0.10" },
		"address ipv6":      func(s *Seed) { s.Address = "fd00::10/64" },
		"gateway no addr":   func(s *Seed) { s.Address = "" },
		"gateway not ip":    func(s *Seed) { s.Gateway = "router" },
		"dns not ip":        func(s *Seed) { s.DNS = []string{"dns.example"} },
		"ssh key multiline": func(s *Seed) { s.SSHKeys = []string{"a\nb"} },
	} {
		t.Run(name, func(t *testing.T) {
			s := ok
			mutate(&s)
			if err := s.Validate(); err == nil {
				t.Errorf("Validate accepted %+v", s)
			}
			if _, err := s.ISO(); err == nil {
				t.Errorf("ISO accepted %+v", s)
			}
		})
	}
}

func TestISOHoldsFiles(t *testing.T) {
	s := Seed{Hostname: "probe-0", MAC: "52:54:00:12:34:56", Address: "10.0.2.15/24", Gateway: "10.0.2.2"}
	img, err := s.ISO()
	if err != nil {
		t.Fatal(err)
	}
	got := readISO(t, img)
	if got.label != Label || got.jolietLabel != Label {
		t.Errorf("labels %q / %q, want %q", got.label, got.jolietLabel, Label)
	}
	want := s.Files()
	if len(got.joliet) != len(want) {
		t.Errorf("joliet names %v, want %d files", keys(got.joliet), len(want))
	}
	for name, data := range want {
		if !bytes.Equal(got.joliet[name], data) {
			t.Errorf("%s in the image = %q, want %q", name, got.joliet[name], data)
		}
	}
}
