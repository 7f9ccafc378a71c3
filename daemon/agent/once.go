package agent

import "sync"

// memo runs an item at most once at a time and remembers the answers of
// the last items run, so an item the servers hand out again (a stale
// answer, a report not yet applied) is answered with the same answer
// instead of running twice. Its zero value is ready.
type memo[K comparable, R any] struct {
	mu   sync.Mutex
	busy map[K]bool
	done map[K]R
	fifo []K
	// sent is the state index at which the servers took an item's answer
	// (0 unknown): a copy of the item in an answer of an earlier index is
	// stale, not a request to send it again.
	sent map[K]uint64
}

const doneMemory = 4096

// once runs the item with key k in a goroutine counted by wg unless it is
// running already, and answers a repeat of a finished one with its
// remembered answer, unless the servers took that answer after index, the
// state index of the answer that handed the item out again (0: unknown):
// that copy is stale. produce makes the answer (false: neither remember nor
// send it); send delivers it.
func (m *memo[K, R]) once(wg *sync.WaitGroup, k K, index uint64, produce func() (R, bool), send func(R)) {
	m.mu.Lock()
	if m.busy == nil {
		m.busy, m.done, m.sent = map[K]bool{}, map[K]R{}, map[K]uint64{}
	}
	if m.busy[k] || m.sent[k] > index {
		m.mu.Unlock()
		return
	}
	rep, done := m.done[k]
	m.busy[k] = true
	m.mu.Unlock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() {
			m.mu.Lock()
			delete(m.busy, k)
			m.mu.Unlock()
		}()
		if !done {
			var ok bool
			if rep, ok = produce(); !ok {
				return
			}
			m.remember(k, rep)
		}
		send(rep)
	}()
}

func (m *memo[K, R]) remember(k K, rep R) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.done[k]; ok {
		return
	}
	m.done[k] = rep
	m.fifo = append(m.fifo, k)
	if len(m.fifo) > doneMemory {
		delete(m.done, m.fifo[0])
		delete(m.sent, m.fifo[0])
		m.fifo = m.fifo[1:]
	}
}

// taken notes that the servers took k's answer at state index index.
func (m *memo[K, R]) taken(k K, index uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.done[k]; ok && index > 0 {
		m.sent[k] = index
	}
}
