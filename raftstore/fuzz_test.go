package raftstore

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzDecodeCommand: no input makes the FSM's command decoder panic, and a
// command it accepts applies (or is refused) without a panic.
func FuzzDecodeCommand(f *testing.F) {
	for _, c := range append(withOpStarted(),
		&ActionFinished{Operation: "op1", Address: "network.lan", Status: ActionDone, Resource: resource("network.lan"), Time: t0},
		&FinishOperation{ID: "op1", Status: OpFailed, Error: "x", Time: t0},
		&PutPlan{ID: HashBlob([]byte("{}")), Project: "p", Stack: "web", Data: []byte("{}"), Time: t0},
		&ExpirePlans{Now: t0}, &DeleteStack{Project: "p", Name: "web", Force: true},
		&PutWork{Work: Work{ID: "w", Agent: "agent-1", Operation: "op1"}},
		&PutWork{Work: Work{ID: "w", Agent: "agent-1", Operation: "op1", Generation: "g", Payload: RawJSON(`{"op":"read","read":"id"}`)}},
		&ReportWork{ID: "w", Agent: "agent-1", Result: RawJSON(`{"ok":true}`), Time: t0},
		startWork("w2", "network.lan"),
	) {
		data, err := Encode(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	one, _ := Encode(&CreateToken{ID: "t", Project: "p", Role: RoleReader, SecretHash: HashSecret("s"), Time: t0})
	f.Add(encodeBatch([][]byte{one, one}))
	// A work item as a kiln from before RawJSON wrote it (base64).
	f.Add(append([]byte{byte(CmdPutWork)}, `{"Work":{"ID":"w","Agent":"agent-1","Operation":"op1","Payload":"eyJvcCI6ImNyZWF0ZSJ9"}}`...))
	f.Add([]byte{})
	f.Add([]byte{byte(CmdPutBlob | IgnoreUnknownTypeFlag)})
	f.Add([]byte{200, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)
		if err != nil || c == nil {
			return
		}
		h := newHarness(t)
		for _, s := range withOpStarted() {
			h.apply(s)
		}
		// The entry as it came: a batch may hold an optional command of a
		// newer version (nil here), which is skipped and cannot be encoded.
		h.applyRaw(data)
		_, _ = Encode(c)
	})
}

// FuzzReadSnapshot: no input makes the snapshot restore decoder (and the
// reference check of an operator restore) panic; what it accepts writes
// back to a snapshot that reads again.
func FuzzReadSnapshot(f *testing.F) {
	h := newHarness(f)
	h.must(withOpStarted()...)
	h.must(putPlan("p", "web", 1, bundleHash, t0))
	var buf bytes.Buffer
	snap, _ := h.f.Snapshot()
	snap.Persist(&writerSink{w: &buf})
	f.Add(buf.Bytes())
	f.Add([]byte(`{"Version":1}`))
	f.Add([]byte(`{"Version":1,"Stacks":[{"Project":"p","Name":"x","Params":{"a":{"t":"x"}}}]}`))
	f.Add([]byte(`{"Version":1,"Resources":[{"State":{"attrs":{"a":1}}}]}`))
	f.Add([]byte(`{"Version":1,"Work":[{"ID":"w","Payload":"eyJvcCI6ImNyZWF0ZSJ9","Result":"eyJvayI6dHJ1ZX0="}]}`))
	f.Add([]byte(`{"Version":2,"Work":[{"ID":"w","Payload":{"op":"create"},"Result":[1]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tb, err := readSnapshot(bytes.NewReader(data))
		if err != nil {
			return
		}
		_ = checkReferences(tb)
		out, err := json.Marshal(tb.export())
		if err != nil {
			return
		}
		if _, err := readSnapshot(bytes.NewReader(out)); err != nil {
			t.Fatalf("a snapshot written from a decoded one does not read: %v", err)
		}
	})
}
