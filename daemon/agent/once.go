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
}

const doneMemory = 4096

// once runs the item with key k in a goroutine counted by wg unless it is
// running already, and answers a repeat of a finished one with its
// remembered answer. produce makes the answer (false: neither remember nor
// send it); send delivers it.
func (m *memo[K, R]) once(wg *sync.WaitGroup, k K, produce func() (R, bool), send func(R)) {
	m.mu.Lock()
	if m.busy == nil {
		m.busy, m.done = map[K]bool{}, map[K]R{}
	}
	if m.busy[k] {
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
		m.fifo = m.fifo[1:]
	}
}
