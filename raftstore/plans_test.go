package raftstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func putPlan(project, stack string, n int, bundleHash string, at time.Time) *PutPlan {
	data := fmt.Appendf(nil, `{"project":%q,"stack":%q,"n":%d}`, project, stack, n)
	return &PutPlan{ID: HashBlob(data), Project: project, Stack: stack, BundleHash: bundleHash,
		Data: data, Expires: at.Add(DefaultPlanTTL), Time: at}
}

// Many plans (the 1,000 reader plans, each with its own bundle)
// leave the blob count where it was once they expire.
func TestPlansExpireAndBlobsReturnToBaseline(t *testing.T) {
	h := newHarness(t)
	h.must(base()...)
	baseCount, _ := h.state().BlobStats()
	for i := range 1000 {
		b := fmt.Appendf(nil, `server "web%d" {}`, i)
		at := t0.Add(time.Duration(i) * time.Second)
		h.must(&PutBlob{Hash: HashBlob(b), Data: b, Time: at},
			putPlan("p", fmt.Sprintf("s%d", i%50), i, HashBlob(b), at))
	}
	n, _ := h.state().BlobStats()
	if plans := len(h.state().Plans("p")); plans != MaxPlansPerProject {
		t.Fatalf("project holds %d plans, want the cap %d", plans, MaxPlansPerProject)
	}
	// The capped plans took their blobs with them; what is left are the live
	// plans (plan + bundle each) and the base.
	if want := baseCount + 2*MaxPlansPerProject; n != want {
		t.Fatalf("%d blobs with %d live plans, want %d", n, MaxPlansPerProject, want)
	}
	// Nothing is due before the plans expire.
	if h.state().GarbageDue(t0.Add(10 * time.Minute)) {
		t.Fatal("garbage due before any plan expired")
	}
	later := t0.Add(1000*time.Second + DefaultPlanTTL)
	if !h.state().GarbageDue(later) {
		t.Fatal("no garbage due after every plan expired")
	}
	h.must(&ExpirePlans{Now: later})
	if n, _ := h.state().BlobStats(); n != baseCount {
		t.Fatalf("%d blobs after expiry, want the baseline %d", n, baseCount)
	}
	if len(h.state().Plans("")) != 0 {
		t.Fatal("plans left after expiry")
	}
	if !h.state().HasBlob(bundleHash) {
		t.Fatal("the bundle of a stack was collected")
	}
	if h.state().GarbageDue(later) {
		t.Fatal("garbage still due after ExpirePlans")
	}
}

func TestPlanCapPerStackDropsOldest(t *testing.T) {
	h := newHarness(t)
	h.must(base()...)
	var ids []string
	for i := range MaxPlansPerStack + 3 {
		p := putPlan("p", "web", i, bundleHash, t0.Add(time.Duration(i)*time.Second))
		ids = append(ids, p.ID)
		h.must(p)
	}
	ps := h.state().Plans("p")
	if len(ps) != MaxPlansPerStack || ps[0].ID != ids[3] {
		t.Fatalf("kept %d plans starting with %s, want %d starting with %s", len(ps), ps[0].ID, MaxPlansPerStack, ids[3])
	}
	for _, id := range ids[:3] {
		if h.state().HasBlob(id) {
			t.Fatalf("blob of dropped plan %s is still stored", id)
		}
	}
	if !h.state().HasBlob(bundleHash) {
		t.Fatal("a bundle still in use was dropped with a plan")
	}
}

// A bundle put just before the operation that refers to it survives a GC.
func TestBlobGraceAndReferences(t *testing.T) {
	h := newHarness(t)
	young := []byte("young")
	old := []byte("old")
	h.must(&PutBlob{Hash: HashBlob(old), Data: old, Time: t0},
		&PutBlob{Hash: HashBlob(young), Data: young, Time: t0.Add(BlobGrace)},
		&PutBlob{Hash: bundleHash, Data: bundle, Time: t0}, putStack())
	h.must(&ExpirePlans{Now: t0.Add(BlobGrace + time.Second)})
	s := h.state()
	if s.HasBlob(HashBlob(old)) || !s.HasBlob(HashBlob(young)) || !s.HasBlob(bundleHash) {
		t.Fatalf("after GC: old %v young %v bundle %v; want false true true",
			s.HasBlob(HashBlob(old)), s.HasBlob(HashBlob(young)), s.HasBlob(bundleHash))
	}
	// A plan's bundle may not be deleted while the plan lives, and a deleted
	// stack takes its plans with it.
	p := putPlan("p", "web", 1, bundleHash, t0)
	h.must(p)
	if err := h.apply(&DeleteBlob{Hash: p.ID}); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete of a live plan's blob: %v, want conflict", err)
	}
	h.must(&DeleteStack{Project: "p", Name: "web"})
	if s.HasBlob(p.ID) || s.HasBlob(bundleHash) || len(s.Plans("")) != 0 {
		t.Fatal("plans or blobs of a deleted stack are left")
	}
}

func TestPlanAndBlobSizeRefusedBeforeProposing(t *testing.T) {
	st := openMem(t)
	big := make([]byte, MaxBlobSize+1)
	before := st.Raft().LastIndex()
	for _, c := range []Command{
		&PutBlob{Hash: HashBlob(big), Data: big},
		&PutPlan{ID: HashBlob(big), Project: "p", Stack: "web", Data: big},
	} {
		_, err := st.Apply(context.Background(), c)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%T of %d bytes: %v, want ErrTooLarge", c, len(big), err)
		}
	}
	if after := st.Raft().LastIndex(); after != before {
		t.Fatalf("log moved from %d to %d: a refused blob reached raft", before, after)
	}
}

// openMem opens a one-node in-memory store and waits for it to lead.
func openMem(t *testing.T) *Store {
	t.Helper()
	_, trans := raft.NewInmemTransport("n1")
	return openLeader(t, Config{NodeID: "n1", Bootstrap: true, InMemory: true, Transport: trans,
		HeartbeatTimeout: 50 * time.Millisecond, ElectionTimeout: 50 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond, CommitTimeout: 5 * time.Millisecond})
}

// Snapshot bytes before and after N plans with large bundles expire: the
// figure of the issue (8 plans with 4 MiB bundles made a 74 MB snapshot).
func BenchmarkSnapshotSizePlans(b *testing.B) {
	for range b.N {
		h := newHarness(b)
		h.must(base()...)
		size := func() int {
			var buf bytes.Buffer
			snap, _ := h.f.Snapshot()
			snap.Persist(&writerSink{w: &buf})
			return buf.Len()
		}
		empty := size()
		for i := range 8 {
			bnd := bytes.Repeat([]byte{byte('a' + i)}, 4<<20)
			at := t0.Add(time.Duration(i) * time.Second)
			h.must(&PutBlob{Hash: HashBlob(bnd), Data: bnd, Time: at}, putPlan("p", "web", i, HashBlob(bnd), at))
		}
		full := size()
		h.must(&ExpirePlans{Now: t0.Add(time.Hour + DefaultPlanTTL)})
		after := size()
		b.ReportMetric(float64(empty), "bytes-before")
		b.ReportMetric(float64(full), "bytes-8plans")
		b.ReportMetric(float64(after), "bytes-expired")
	}
}

// The plans of one project hold at most MaxPlanBytesPerProject: a reader
// planning large bundles evicts its own oldest plans.
func TestPlanBytesPerProjectCapped(t *testing.T) {
	h := newHarness(t)
	h.must(base()...)
	n := 2 * MaxPlanBytesPerProject / (4 << 20)
	for i := range n {
		b := bytes.Repeat([]byte{byte(i)}, 4<<20)
		at := t0.Add(time.Duration(i) * time.Second)
		h.must(&PutBlob{Hash: HashBlob(b), Data: b, Time: at}, putPlan("p", fmt.Sprintf("s%d", i), i, HashBlob(b), at))
	}
	// The bundles of evicted plans are unreferenced now; a GC past their
	// grace takes them.
	h.must(&ExpirePlans{Now: t0.Add(time.Duration(n)*time.Second + BlobGrace)})
	_, size := h.state().BlobStats()
	if size > MaxPlanBytesPerProject+int64(len(bundle)) {
		t.Fatalf("%d bytes of blobs after %d plans of 4 MiB, want at most %d", size, n, MaxPlanBytesPerProject)
	}
	ps := h.state().Plans("p")
	if len(ps) == 0 || ps[len(ps)-1].Stack != fmt.Sprintf("s%d", n-1) {
		t.Fatalf("the newest plan was evicted: %+v", ps)
	}
	t.Logf("%d plans of 4 MiB kept, %d bytes of blobs", len(ps), size)
}
