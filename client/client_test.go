package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/api"
	"github.com/kiln-dev/kiln/internal/testnet"
)

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func TestErrorsCarryStatusAndBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			writeJSON(w, 401, api.Error{Error: "missing or wrong token"})
			return
		}
		writeJSON(w, 400, api.Error{Error: "unknown field", Field: "templat"})
	}))
	defer srv.Close()
	c, err := New(Config{Addr: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Stacks(context.Background())
	if StatusCode(err) != 401 {
		t.Fatalf("no token: got %v, want a 401", err)
	}
	c, _ = New(Config{Addr: srv.URL, Token: "s3cret"})
	_, err = c.Apply(context.Background(), "web", api.ApplyRequest{})
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 400 || e.API.Field != "templat" {
		t.Fatalf("got %v, want a 400 naming the field", err)
	}
}

func TestFailsOverToTheNextServer(t *testing.T) {
	var unavailable, good atomic.Int32
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		unavailable.Add(1)
		writeJSON(w, 503, api.Error{Error: "no leader"})
	}))
	defer busy.Close()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		good.Add(1)
		writeJSON(w, 200, []api.StackSummary{{Name: "web"}})
	}))
	defer ok.Close()
	c, err := New(Config{Addr: testnet.FreeAddr(t) + "," + busy.URL + "," + ok.URL, RetryPause: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Stacks(context.Background())
	if err != nil || len(got) != 1 || got[0].Name != "web" {
		t.Fatalf("got %v, %v", got, err)
	}
	// The server that answered is tried first next time.
	if _, err := c.Stacks(context.Background()); err != nil {
		t.Fatal(err)
	}
	if unavailable.Load() != 1 || good.Load() != 2 {
		t.Fatalf("503 server asked %d times, good one %d; want 1 and 2", unavailable.Load(), good.Load())
	}
}

func TestGivesUpWhenNoServerAnswers(t *testing.T) {
	c, _ := New(Config{Addr: testnet.FreeAddr(t), Rounds: 2, RetryPause: time.Millisecond})
	_, err := c.Stacks(context.Background())
	if !errors.Is(err, ErrNoServer) {
		t.Fatalf("got %v, want ErrNoServer", err)
	}
}

func TestFollowsRedirectWithToken(t *testing.T) {
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t" {
			writeJSON(w, 401, api.Error{Error: "no token"})
			return
		}
		var req api.ApplyRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.TTL != "2h0m0s" {
			writeJSON(w, 400, api.Error{Error: "bad body"})
			return
		}
		writeJSON(w, 202, api.OperationRef{OperationID: "op-1", Stack: "web"})
	}))
	defer leader.Close()
	follower := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, leader.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer follower.Close()
	c, _ := New(Config{Addr: follower.URL, Token: "t"})
	ref, err := c.Apply(context.Background(), "web", api.ApplyRequest{TTL: (2 * time.Hour).String()})
	if err != nil || ref.OperationID != "op-1" {
		t.Fatalf("got %+v, %v", ref, err)
	}
}

func TestBlockingQueries(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch r.URL.Path {
		case "/v1/operations/op-1":
			if q.Get("index") != "7" || q.Get("wait") != "30s" {
				writeJSON(w, 400, api.Error{Error: "bad query " + r.URL.RawQuery})
				return
			}
			w.Header().Set(api.IndexHeader, "9")
			writeJSON(w, 200, api.Operation{ID: "op-1", Status: "running"})
		case "/v1/agents/a1/work":
			writeJSON(w, 200, json.RawMessage(`{"items":[{"operation_id":"op-1","address":"server.web[0]","attrs":{"cpus":{"i":9007199254740993}}}],"index":3}`))
		default:
			writeJSON(w, 404, api.Error{Error: "no route"})
		}
	}))
	defer srv.Close()
	c, _ := New(Config{Addr: srv.URL})
	op, idx, err := c.Operation(context.Background(), "op-1", 7, 30*time.Second)
	if err != nil || op.Status != "running" || idx != 9 {
		t.Fatalf("got %+v, %d, %v", op, idx, err)
	}
	w, err := c.Work(context.Background(), "a1", 0, time.Second)
	if err != nil || len(w.Items) != 1 {
		t.Fatalf("got %+v, %v", w, err)
	}
	if n := w.Items[0].Attrs["cpus"]; n != int64(9007199254740993) {
		t.Fatalf("work numbers lose precision: %#v", n)
	}
	if _, err := c.Stack(context.Background(), "nope"); !IsNotFound(err) {
		t.Fatalf("got %v, want a 404", err)
	}
}
