package server

import "testing"

// storeMetrics gathers the metrics read from the server's store.
func storeMetrics(t *testing.T, m *metrics) map[string]float64 {
	t.Helper()
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		switch name := f.GetName(); name {
		case "kiln_state_index":
			got[name] = f.GetMetric()[0].GetGauge().GetValue()
		case "kiln_raft_entries_total", "kiln_state_wakeups_total":
			got[name] = f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if len(got) != 3 {
		t.Fatalf("store metrics = %v, want the three of them", got)
	}
	return got
}

func TestMetricsReadTheStore(t *testing.T) {
	for name, v := range storeMetrics(t, newMetrics(&Server{})) {
		if v != 0 {
			t.Errorf("without a store: %s = %v, want 0", name, v)
		}
	}
	s, _ := single(t, nil)
	got := storeMetrics(t, s.metrics)
	if got["kiln_state_index"] == 0 || got["kiln_raft_entries_total"] == 0 {
		t.Fatalf("ready server: %v, want an index and entries above 0", got)
	}
	if idx := float64(s.store.State().Index()); got["kiln_state_index"] > idx {
		t.Fatalf("kiln_state_index = %v, above the store's index %v", got["kiln_state_index"], idx)
	}
}
