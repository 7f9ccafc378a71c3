package raftstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kiln-dev/kiln/internal/testnet"
	"github.com/kiln-dev/kiln/internal/testwait"
)

// tokenCmd is a token creation; bad ones are refused by the FSM (an
// unknown role that names the command).
func tokenCmd(id string, bad bool) *CreateToken {
	role := RoleReader
	if bad {
		role = Role("bad-" + id)
	}
	return &CreateToken{ID: id, Project: "p", Role: role, SecretHash: HashSecret("s-" + id), Description: id, Time: t0}
}

// A batch entry applies each command on its own: a refused one leaves no
// trace and does not refuse the others; each gets its own answer.
func TestBatchEntryAnswersPerCommand(t *testing.T) {
	h := newHarness(t)
	b := &Batch{Commands: []Command{
		tokenCmd("a", false),
		tokenCmd("b", true),
		tokenCmd("a", false), // a duplicate of the first: conflict
		&ExpirePlans{Now: t0},
		tokenCmd("c", false),
	}}
	data, err := Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	if MessageType(data[0]) != CmdBatch {
		t.Fatalf("type byte %d, want CmdBatch", data[0])
	}
	resp := h.f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: data})
	rs, ok := resp.(batchResult)
	if !ok || len(rs) != 5 {
		t.Fatalf("response %#v, want 5 answers", resp)
	}
	if rs[0] != nil || rs[4] != nil {
		t.Errorf("accepted commands answered %v, %v", rs[0], rs[4])
	}
	if err, _ := rs[1].(error); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "bad-b") {
		t.Errorf("bad role answered %v, want its own ErrInvalid", rs[1])
	}
	if err, _ := rs[2].(error); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "token a exists") {
		t.Errorf("duplicate answered %v, want ErrConflict", rs[2])
	}
	if n, ok := rs[3].(int); !ok || n != 0 {
		t.Errorf("ExpirePlans answered %#v, want its count 0", rs[3])
	}
	st := h.state()
	for _, id := range []string{"a", "c"} {
		tok, ok := st.Token(id)
		if !ok || tok.Index != 7 {
			t.Errorf("token %s: %+v %v, want it at the entry's index 7", id, tok, ok)
		}
	}
	if _, ok := st.Token("b"); ok {
		t.Error("the refused token is in the state")
	}
	if st.Index() != 7 {
		t.Errorf("index %d, want 7", st.Index())
	}
}

// Bad batch framing is an error, never a panic; a batch in a batch is
// refused; an optional unknown type inside a batch is skipped.
func TestBatchDecode(t *testing.T) {
	one, _ := Encode(tokenCmd("a", false))
	good := encodeBatch([][]byte{one, one})
	if _, err := Decode(good); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"no count":       {byte(CmdBatch)},
		"zero":           {byte(CmdBatch), 0},
		"short":          good[:len(good)-3],
		"trailing":       append(append([]byte{}, good...), 1),
		"nested":         encodeBatch([][]byte{good}),
		"bad inner":      encodeBatch([][]byte{{byte(CmdCreateToken), '{'}}),
		"huge count":     {byte(CmdBatch), 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2},
		"length too far": {byte(CmdBatch), 1, 0x7f, 1},
	} {
		if _, err := Decode(data); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	if _, err := Encode(&Batch{Commands: []Command{&Batch{}}}); err == nil {
		t.Error("a batch in a batch encoded")
	}
	opt := []byte{byte(100 | IgnoreUnknownTypeFlag), '{', '}'}
	h := newHarness(t)
	resp := h.f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: encodeBatch([][]byte{opt, one})})
	if rs, ok := resp.(batchResult); !ok || len(rs) != 2 || rs[0] != nil || rs[1] != nil {
		t.Errorf("answers %#v, want two nils", resp)
	}
	if _, ok := h.state().Token("a"); !ok {
		t.Error("the known command after a skipped one did not apply")
	}
	// A batch is the store's own; a caller cannot propose one.
	s := singleStore(t)
	if _, err := s.Apply(ctx(t), &Batch{Commands: []Command{tokenCmd("x", false)}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Apply(Batch) = %v, want ErrInvalid", err)
	}
}

// singleStore is one on-disk (fsynced) node: commands proposed together
// while an append is on disk are grouped.
func singleStore(t *testing.T) *Store {
	t.Helper()
	cfg := fastConfig("node0")
	cfg.DataDir = filepath.Join(t.TempDir(), "node0")
	cfg.RaftAddr, cfg.Bootstrap = testnet.FreeAddr(t), true
	return openLeader(t, cfg)
}

// Many clients at once, a quarter of their commands refused: every call
// gets its own answer, each client's commands commit in its order, and
// commands were grouped into batch entries.
func TestGroupCommitConcurrentClients(t *testing.T) {
	s := singleStore(t)
	const clients, each = 48, 25
	type answer struct {
		id  string
		bad bool
		err error
	}
	answers := make([][]answer, clients)
	var wg sync.WaitGroup
	for g := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("g%d-%d", g, i)
				bad := (g+i)%4 == 0
				_, err := s.Apply(context.Background(), tokenCmd(id, bad))
				answers[g] = append(answers[g], answer{id, bad, err})
			}
		}()
	}
	wg.Wait()
	st := s.State()
	for g, as := range answers {
		var last uint64
		for _, a := range as {
			tok, ok := st.Token(a.id)
			if a.bad {
				if !errors.Is(a.err, ErrInvalid) || !strings.Contains(a.err.Error(), "bad-"+a.id) {
					t.Errorf("%s: %v, want its own refusal", a.id, a.err)
				}
				if ok {
					t.Errorf("%s: refused but in the state", a.id)
				}
				continue
			}
			if a.err != nil || !ok || tok.Description != a.id {
				t.Errorf("%s: err %v, token %+v %v", a.id, a.err, tok, ok)
				continue
			}
			if tok.Index <= last {
				t.Errorf("client %d: %s committed at %d, not after its previous command (%d)", g, a.id, tok.Index, last)
			}
			last = tok.Index
		}
	}
	// Every command had an entry of its own before group commit.
	if n := s.raft.LastIndex(); n > clients*each/2 {
		t.Errorf("%d commands took %d log entries: they were hardly grouped", clients*each, n)
	}
	t.Logf("%d commands in %d log entries", clients*each, s.raft.LastIndex())
}

// A leader that loses its leadership with batches in flight: every call
// returns, each with success or a clear not-leader error, and every success
// is in the new leader's state.
func TestGroupCommitLeaderChange(t *testing.T) {
	c := newTestCluster(t, 3)
	old := c.leader(nil)
	const clients, each = 32, 40
	type answer struct {
		id  string
		err error
	}
	answers := make(chan answer, clients*each)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range each {
				id := fmt.Sprintf("g%d-%d", g, i)
				_, err := old.Apply(ctx(t), tokenCmd(id, false))
				answers <- answer{id, err}
			}
		}()
	}
	close(start)
	testwait.For(t, 10*time.Second, "writes under way", func() bool { return len(answers) >= clients })
	if err := old.raft.LeadershipTransfer().Error(); err != nil {
		t.Fatalf("leadership transfer: %v", err)
	}
	wg.Wait()
	close(answers)
	leader := c.leader(nil)
	if leader == old {
		t.Fatal("leadership did not move")
	}
	if err := leader.Barrier(ctx(t)); err != nil {
		t.Fatal(err)
	}
	ok, refused := 0, 0
	for a := range answers {
		_, in := leader.State().Token(a.id)
		switch {
		case a.err == nil:
			ok++
			if !in {
				t.Errorf("%s: acknowledged but not in the new leader's state", a.id)
			}
		case errors.Is(a.err, ErrNotLeader), errors.Is(a.err, ErrLeadershipLost):
			refused++
		default:
			t.Errorf("%s: %v, want success or a not-leader error", a.id, a.err)
		}
	}
	if refused == 0 {
		t.Error("no call saw the leader change")
	}
	t.Logf("%d acknowledged, %d refused by the leader change", ok, refused)
}
