package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/client"
)

// fetchingDriver's Create reports a download of 100 MiB in 1 MiB steps.
type fetchingDriver struct{ memKind }

func (d fetchingDriver) Create(ctx context.Context, a Action) (Object, error) {
	p := fetchProgress(ctx, a.Address)
	if p == nil {
		return Object{}, nil
	}
	for i := int64(0); i <= 100; i++ {
		p(i<<20, 100<<20)
	}
	return Object{PhysicalName: "x"}, nil
}

// TestProgressEvents: an action's download progress reaches the servers as
// events of its stack and operation, every 10%, then the size and time.
func TestProgressEvents(t *testing.T) {
	var (
		mu  sync.Mutex
		evs []api.Event
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/v1/agents/a1/events" {
			w.WriteHeader(404)
			return
		}
		var ev api.Event
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			t.Error(err)
		}
		mu.Lock()
		evs = append(evs, ev)
		mu.Unlock()
		w.WriteHeader(204)
	}))
	defer srv.Close()
	c, err := client.New(client.Config{Addr: srv.URL, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{ID: "a1", DataDir: t.TempDir(), Client: c, Drivers: Drivers{"image": fetchingDriver{}}})
	if err != nil {
		t.Fatal(err)
	}
	rep := a.run(context.Background(), api.WorkItem{OperationID: "op-1", Stack: "web", Address: "image.base", Kind: "image", Op: "create", WorkID: "w1"})
	if !rep.OK {
		t.Fatalf("run: %+v", rep)
	}
	mu.Lock()
	defer mu.Unlock()
	var msgs []string
	for _, ev := range evs {
		if ev.Operation != "op-1" || ev.Stack != "web" || ev.Address != "image.base" || ev.Level != "info" {
			t.Errorf("event %+v: want operation op-1, stack web, address image.base, info", ev)
		}
		msgs = append(msgs, ev.Message)
	}
	// 10%, 20%, ... 90%, then the end (100% is the end's).
	if len(msgs) != 10 || msgs[3] != "image.base: fetched 40% (40.0 MiB of 100.0 MiB)" ||
		!strings.HasPrefix(msgs[9], "image.base: fetched 100.0 MiB in ") {
		t.Errorf("progress events:\n%s", strings.Join(msgs, "\n"))
	}
}
