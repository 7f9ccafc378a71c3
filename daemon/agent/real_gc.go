package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/executors"
	"github.com/kiln-dev/kiln/executors/host"
	"github.com/kiln-dev/kiln/executors/kinds"
	"github.com/kiln-dev/kiln/executors/network"
	"github.com/kiln-dev/kiln/executors/records"
	"github.com/kiln-dev/kiln/executors/volume"
)

// Orphan kinds, as api.Orphan.Kind spells them.
const (
	OrphanDomain  = "domain"
	OrphanVolume  = "volume"
	OrphanBridge  = "bridge"
	OrphanRule    = "iptables-rule"
	OrphanDnsmasq = "dnsmasq"
	OrphanFile    = "file"
)

// Orphans lists the objects on this host tagged by kiln whose owner no
// stack holds (owned answers false for their scope, see executors.Scope,
// and resource address):
// domains by their kiln metadata, volumes of kiln-volumes by name, bridges
// by alias, iptables rules in kiln's chains by comment, dnsmasq directories
// by the owner in their configuration, and the real drivers' own records
// (executors/records). The address given to owned is the resource address (an
// instance made by a replace is reported under its resource's address).
//
// A volume the real drivers have no record of is known only by its
// sanitized name; owned is asked about that name.
//
// drivers must come from RealDrivers. Agent is left empty for the caller.
func Orphans(ctx context.Context, drivers Drivers, owned func(stack, address string) bool) ([]api.Orphan, error) {
	r, err := realOf(drivers)
	if err != nil {
		return nil, err
	}
	l := &orphanList{owned: owned}
	if err := l.addDomains(ctx, r); err != nil {
		return nil, err
	}
	if err := l.addVolumes(ctx, r); err != nil {
		return nil, err
	}
	if err := l.addBridges(); err != nil {
		return nil, err
	}
	if err := l.addRules(r); err != nil {
		return nil, err
	}
	l.addDnsmasqDirs(r)
	if err := l.addRecords(r); err != nil {
		return nil, err
	}
	return l.sorted(), nil
}

// orphanList collects, for Orphans, the objects whose owner no stack
// holds.
type orphanList struct {
	owned func(stack, address string) bool
	out   []api.Orphan
}

// add lists the object unless its owner (stack, physical address) is
// held.
func (l *orphanList) add(kind, name, stack, phys string) {
	if l.owned(stack, host.BaseAddress(phys)) {
		return
	}
	l.out = append(l.out, api.Orphan{Kind: kind, Name: name, Owner: executors.Owner(stack, phys)})
}

// addDomains lists the domains, by their kiln metadata.
func (l *orphanList) addDomains(ctx context.Context, r *Real) error {
	servers, err := r.srv.List(ctx)
	if err != nil {
		return err
	}
	for _, s := range servers {
		l.add(OrphanDomain, s.Name, s.Stack, s.Address)
	}
	return nil
}

// addVolumes lists the volumes of the pool, the overlays and seeds of
// servers included: by the record that holds them, else by the name.
func (l *orphanList) addVolumes(ctx context.Context, r *Real) error {
	owners, err := volumeOwners(r)
	if err != nil {
		return err
	}
	vols, err := r.vols.List(ctx)
	if err != nil {
		return err
	}
	for _, v := range vols {
		if rec, ok := owners[v.Name]; ok {
			l.add(OrphanVolume, v.Name, rec.Stack, rec.Phys)
			continue
		}
		l.add(OrphanVolume, v.Name, v.Stack, v.Address)
	}
	return nil
}

// volumeOwners maps each volume name the real drivers have a record of
// (volumes, and the overlays and seeds of servers) to that record.
func volumeOwners(r *Real) (map[string]records.Record, error) {
	owners := map[string]records.Record{}
	for _, kind := range []string{"volume", "server"} {
		recs, err := r.h.Records.List(kind)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			if kind == "volume" {
				owners[rec.ID] = rec
			}
			for _, f := range rec.Files {
				owners[f] = rec
			}
		}
	}
	return owners, nil
}

// addBridges lists kiln's bridges, by their alias.
func (l *orphanList) addBridges() error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	for _, link := range links {
		if link.Type() != "bridge" || !strings.HasPrefix(link.Attrs().Name, network.BridgePrefix) {
			continue
		}
		if stack, phys, ok := executors.ParseOwner(link.Attrs().Alias); ok {
			l.add(OrphanBridge, link.Attrs().Name, stack, phys)
		}
	}
	return nil
}

// addRules lists the iptables rules in kiln's chains, by their comment.
func (l *orphanList) addRules(r *Real) error {
	for _, c := range network.Chains {
		ok, err := r.net.IPTables.ChainExists(c.Table, c.Name)
		if err != nil {
			return fmt.Errorf("iptables: %w", err)
		}
		if !ok {
			continue
		}
		lines, err := r.net.IPTables.List(c.Table, c.Name)
		if err != nil {
			return fmt.Errorf("iptables: %w", err)
		}
		for _, line := range lines {
			if stack, phys, ok := executors.ParseOwner(network.Comment(line)); ok {
				l.add(OrphanRule, "-t "+c.Table+" "+line, stack, phys)
			}
		}
	}
	return nil
}

// addDnsmasqDirs lists the networks' dnsmasq directories, by the owner in
// their configuration.
func (l *orphanList) addDnsmasqDirs(r *Real) {
	dirs, _ := filepath.Glob(filepath.Join(r.DataDir, "networks", "*"))
	for _, d := range dirs {
		if stack, phys, ok := dnsmasqOwner(d); ok {
			l.add(OrphanDnsmasq, d, stack, phys)
		}
	}
}

// addRecords lists the real drivers' own records.
func (l *orphanList) addRecords(r *Real) error {
	for _, kind := range kinds.Names() {
		recs, err := r.h.Records.List(kind)
		if err != nil {
			return err
		}
		for _, rec := range recs {
			p, _ := r.h.Records.Path(kind, rec.ID)
			l.add(OrphanFile, p, rec.Stack, rec.Phys)
		}
	}
	return nil
}

// sorted is the list by owner, then kind.
func (l *orphanList) sorted() []api.Orphan {
	out := l.out
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Owner != out[j].Owner {
			return out[i].Owner < out[j].Owner
		}
		return out[i].Kind < out[j].Kind
	})
	return out
}

// dnsmasqOwner reads the owner from the first line of a network
// directory's dnsmasq configuration ("# kiln:stack/address: written by
// kiln").
func dnsmasqOwner(dir string) (string, string, bool) {
	confs, _ := filepath.Glob(filepath.Join(dir, "dnsmasq-*.conf"))
	for _, c := range confs {
		f, err := os.Open(c)
		if err != nil {
			continue
		}
		line, _ := bufio.NewReader(f).ReadString('\n')
		f.Close()
		tag, _, _ := strings.Cut(strings.TrimPrefix(line, "# "), ": written by kiln")
		if stack, phys, ok := executors.ParseOwner(strings.TrimSpace(tag)); ok {
			return stack, phys, true
		}
	}
	return "", "", false
}

// RemoveOrphans removes what Orphans listed: domains (with their overlay,
// seed and console log), volumes, and for bridges, rules and dnsmasq
// directories everything of their owner's network or port forward (the
// bridge, dnsmasq and its files, the owner's rules). Each owner's objects
// are removed once; what is already gone is not an error. It goes on
// after an error and returns them all.
func RemoveOrphans(ctx context.Context, drivers Drivers, orphans []api.Orphan) error {
	r, err := realOf(drivers)
	if err != nil {
		return err
	}
	var errs []error
	netDone := map[string]bool{}
	// Domains first: they hold volumes and sit on bridges.
	order := map[string]int{OrphanDomain: 0, OrphanVolume: 1, OrphanBridge: 2, OrphanDnsmasq: 2, OrphanRule: 2, OrphanFile: 3}
	list := append([]api.Orphan(nil), orphans...)
	sort.SliceStable(list, func(i, j int) bool { return order[list[i].Kind] < order[list[j].Kind] })
	for _, o := range list {
		stack, phys, ok := executors.ParseOwner(o.Owner)
		if !ok {
			errs = append(errs, fmt.Errorf("orphan %s %s: owner %q is not a kiln owner", o.Kind, o.Name, o.Owner))
			continue
		}
		var err error
		switch o.Kind {
		case OrphanDomain:
			if err = r.srv.Delete(ctx, stack, phys); err == nil {
				err = r.server().Detach(ctx, o.Name)
			}
		case OrphanVolume:
			if !strings.HasPrefix(o.Name, volume.NamePrefix) {
				err = fmt.Errorf("%q is not a kiln volume", o.Name)
				break
			}
			err = r.vols.DeleteName(o.Name)
		case OrphanBridge, OrphanDnsmasq, OrphanRule:
			if netDone[o.Owner] {
				continue
			}
			netDone[o.Owner] = true
			// network.Delete removes the owner's dnsmasq, files, rules (of a
			// port forward too) and bridge, checking the bridge's alias.
			err = r.net.Delete(ctx, network.Spec{Stack: stack, Address: phys})
		case OrphanFile:
			if filepath.Dir(filepath.Dir(o.Name)) != r.h.Records.Dir() {
				err = fmt.Errorf("%s is not a record of the real drivers", o.Name)
				break
			}
			if err = os.Remove(o.Name); errors.Is(err, os.ErrNotExist) {
				err = nil
			}
		default:
			err = fmt.Errorf("unknown kind")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove orphan %s %s: %w", o.Kind, o.Name, err))
		}
	}
	return errors.Join(errs...)
}
