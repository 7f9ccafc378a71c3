package raftstore

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// snapshotVersion is written into every snapshot; Restore refuses a newer one.
// Version 2 keeps work items' payloads and results as JSON (RawJSON), where
// version 1 had base64 strings; both read.
const snapshotVersion = 2

// snapshotData is the whole state as written to a snapshot: sorted lists, so
// the same state always gives the same bytes.
type snapshotData struct {
	Version    int
	Index      uint64
	Projects   []Project
	Tokens     []Token
	Blobs      []snapshotBlob
	Stacks     []Stack
	Resources  []Resource
	Events     []snapshotEvents
	Operations []Operation
	Agents     []Agent
	Servers    []ServerInfo `json:",omitempty"`
	Work       []Work       `json:",omitempty"`
	Plans      []PlanRecord `json:",omitempty"`
}

type snapshotBlob struct {
	Hash string
	Data []byte
	Time time.Time `json:",omitzero"`
}

type snapshotEvents struct {
	Project string
	Stack   string
	NextSeq uint64
	Events  []Event
}

// export copies the tables; the caller holds the read lock. Blob contents are
// shared: a blob is never changed after it is stored.
func (t *tables) export() *snapshotData {
	d := &snapshotData{Version: snapshotVersion, Index: t.index}
	for _, k := range slices.Sorted(maps.Keys(t.projects)) {
		d.Projects = append(d.Projects, *t.projects[k])
	}
	for _, k := range slices.Sorted(maps.Keys(t.tokens)) {
		d.Tokens = append(d.Tokens, *t.tokens[k])
	}
	for _, k := range slices.Sorted(maps.Keys(t.blobs)) {
		d.Blobs = append(d.Blobs, snapshotBlob{Hash: k, Data: t.blobs[k], Time: t.blobTimes[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(t.stacks)) {
		d.Stacks = append(d.Stacks, t.stacks[k].clone())
	}
	for _, k := range slices.Sorted(maps.Keys(t.resources)) {
		rs := t.resources[k]
		for _, a := range slices.Sorted(maps.Keys(rs)) {
			d.Resources = append(d.Resources, rs[a].clone())
		}
	}
	for _, k := range slices.Sorted(maps.Keys(t.events)) {
		p, s := splitKey(k)
		el := t.events[k]
		d.Events = append(d.Events, snapshotEvents{Project: p, Stack: s, NextSeq: el.NextSeq, Events: slices.Clone(el.kept())})
	}
	for _, k := range slices.Sorted(maps.Keys(t.operations)) {
		d.Operations = append(d.Operations, t.operations[k].clone())
	}
	sort.SliceStable(d.Operations, func(i, j int) bool { return d.Operations[i].CreateIndex < d.Operations[j].CreateIndex })
	for _, k := range slices.Sorted(maps.Keys(t.agents)) {
		d.Agents = append(d.Agents, t.agents[k].clone())
	}
	for _, k := range slices.Sorted(maps.Keys(t.servers)) {
		d.Servers = append(d.Servers, *t.servers[k])
	}
	for _, k := range slices.Sorted(maps.Keys(t.work)) {
		d.Work = append(d.Work, t.work[k].clone())
	}
	for _, k := range slices.Sorted(maps.Keys(t.plans)) {
		d.Plans = append(d.Plans, *t.plans[k])
	}
	return d
}

// tables rebuilds the tables from a snapshot.
func (d *snapshotData) tables() (*tables, error) {
	if d.Version < 1 || d.Version > snapshotVersion {
		return nil, fmt.Errorf("snapshot version %d is not supported (this kiln reads up to %d)", d.Version, snapshotVersion)
	}
	t := newTables()
	t.index = d.Index
	for _, p := range d.Projects {
		t.projects[p.Name] = &p
	}
	for _, tok := range d.Tokens {
		t.tokens[tok.ID] = &tok
		t.tokenByHash[tok.SecretHash] = tok.ID
	}
	for _, b := range d.Blobs {
		t.blobs[b.Hash] = b.Data
		if !b.Time.IsZero() {
			t.blobTimes[b.Hash] = b.Time
		}
	}
	for _, st := range d.Stacks {
		t.stacks[stackKey(st.Project, st.Name)] = &st
	}
	for _, r := range d.Resources {
		k := stackKey(r.Project, r.Stack)
		if t.resources[k] == nil {
			t.resources[k] = map[string]*Resource{}
		}
		t.resources[k][r.State.Address] = &r
	}
	for _, e := range d.Events {
		t.events[stackKey(e.Project, e.Stack)] = &eventLog{NextSeq: e.NextSeq, Events: e.Events}
	}
	for _, o := range d.Operations {
		o.indexActions()
		t.operations[o.ID] = &o
	}
	for _, a := range d.Agents {
		t.agents[a.ID] = &a
	}
	for _, sv := range d.Servers {
		t.servers[sv.ID] = &sv
	}
	for _, w := range d.Work {
		t.work[w.ID] = &w
	}
	for _, p := range d.Plans {
		t.plans[p.ID] = &p
	}
	return t, nil
}

// readSnapshot decodes a snapshot. Bad bytes give an error, never a panic.
func readSnapshot(r io.Reader) (t *tables, err error) {
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, fmt.Errorf("read snapshot: %v", p)
		}
	}()
	var d snapshotData
	if err := json.NewDecoder(bufio.NewReader(r)).Decode(&d); err != nil {
		return nil, fmt.Errorf("read snapshot: %w", err)
	}
	return d.tables()
}

type fsmSnapshot struct {
	data *snapshotData
}

// Persist writes the captured state as JSON; on error the sink is cancelled.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<16)
	err := json.NewEncoder(w).Encode(s.data)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
