package raftstore

import (
	"maps"
	"slices"
	"sort"
	"time"
)

// Plans and blob garbage collection.
//
// A plan (`kiln plan`) is stored as a blob so that any later leader can
// apply it by id; its record says whose it is and when it expires. Plans are
// bounded in number (per stack and per project: the oldest go first) and in
// time (the leader proposes ExpirePlans with its clock; the FSM decides from
// the time in the command, so every node agrees). A blob that no stack and
// no live plan refers to is deleted by ExpirePlans once it is older than
// BlobGrace (the grace covers a bundle put just before the operation that
// refers to it).

// Limits of plans and blobs.
const (
	// MaxPlansPerStack bounds the unexpired plans of one stack.
	MaxPlansPerStack = 10
	// MaxPlansPerProject bounds the unexpired plans of one project.
	MaxPlansPerProject = 100
	// MaxPlanBytesPerProject bounds the bytes the stored plans of one
	// project hold (their plan blobs and the bundles no stack uses): beyond
	// it the oldest plans go, so a reader planning large bundles costs the
	// cluster at most this much.
	MaxPlanBytesPerProject = 64 << 20
	// DefaultPlanTTL is how long a plan stays appliable by id.
	DefaultPlanTTL = time.Hour
	// BlobGrace is how long an unreferenced blob is kept after it was put.
	BlobGrace = 10 * time.Minute
	// MaxCommandSize bounds an encoded command; Store.Apply refuses a bigger
	// one with ErrTooLarge before it reaches the log.
	MaxCommandSize = 2*MaxBlobSize + 1<<20
)

func init() {
	commandTypes[CmdPutPlan] = func() Command { return new(PutPlan) }
	commandTypes[CmdExpirePlans] = func() Command { return new(ExpirePlans) }
}

// PlanRecord is a stored plan: its blob (by ID, the blob's hash) and what
// it refers to.
type PlanRecord struct {
	ID         string // hash of the plan blob
	Project    string
	Stack      string
	BundleHash string `json:",omitempty"` // the bundle blob the plan applies
	Created    time.Time
	Expires    time.Time
	Index      uint64
}

// PutPlan stores a plan blob and its record. Putting the same plan again
// moves its expiry. When the stack or the project then holds more plans than
// allowed, the oldest are dropped (with their blobs if nothing else refers
// to them).
type PutPlan struct {
	ID         string // HashBlob(Data)
	Project    string
	Stack      string
	BundleHash string `json:",omitempty"`
	Data       []byte
	Expires    time.Time
	Time       time.Time
}

// ExpirePlans drops the plans that expired at Now and the blobs that nothing
// refers to and that were put before Now-BlobGrace. The leader proposes it
// with its clock.
type ExpirePlans struct {
	Now time.Time
}

func (*PutPlan) Type() MessageType     { return CmdPutPlan }
func (*ExpirePlans) Type() MessageType { return CmdExpirePlans }

func (c *PutPlan) apply(tx *txn) (any, error) {
	switch {
	case c.Project == "" || c.Stack == "":
		return nil, invalid("plan project and stack are required")
	case len(c.Data) > MaxBlobSize:
		return nil, errorf(ErrTooLarge, "plan of %d bytes is over the limit of %d bytes", len(c.Data), MaxBlobSize)
	case c.ID == "" || HashBlob(c.Data) != c.ID:
		return nil, invalid("plan id %q does not match its content", c.ID)
	}
	if c.BundleHash != "" {
		if _, ok := tx.t.blobs[c.BundleHash]; !ok {
			return nil, notFound("bundle %s of the plan (put the blob first)", c.BundleHash)
		}
	}
	if p, ok := tx.t.plans[c.ID]; ok && (p.Project != c.Project || p.Stack != c.Stack) {
		return nil, conflict("plan %s belongs to another stack", c.ID)
	}
	tx.ensureProject(c.Project, c.Time)
	tx.putBlob(c.ID, c.Data, c.Time)
	p := tx.t.plans[c.ID]
	if p == nil {
		p = &PlanRecord{ID: c.ID, Project: c.Project, Stack: c.Stack, BundleHash: c.BundleHash, Created: c.Time}
		tx.t.plans[c.ID] = p
	}
	p.Expires, p.Index = c.Expires, tx.index
	tx.capPlans(func(o *PlanRecord) bool { return o.Project == c.Project && o.Stack == c.Stack }, MaxPlansPerStack)
	tx.capPlans(func(o *PlanRecord) bool { return o.Project == c.Project }, MaxPlansPerProject)
	tx.capPlanBytes(c.Project, c.ID)
	return nil, nil
}

// capPlanBytes drops the oldest plans of a project, but never keep, while
// they hold more than MaxPlanBytesPerProject.
func (tx *txn) capPlanBytes(project, keep string) {
	stackBundles := map[string]bool{}
	for _, st := range tx.t.stacks {
		stackBundles[st.BundleHash] = true
	}
	var ps []*PlanRecord
	var total int
	counted := map[string]bool{}
	for _, p := range tx.t.plans {
		if p.Project != project {
			continue
		}
		ps = append(ps, p)
		for _, h := range []string{p.ID, p.BundleHash} {
			if h != "" && !counted[h] && !stackBundles[h] {
				counted[h] = true
				total += len(tx.t.blobs[h])
			}
		}
	}
	if total <= MaxPlanBytesPerProject {
		return
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Index != ps[j].Index {
			return ps[i].Index < ps[j].Index
		}
		return ps[i].ID < ps[j].ID
	})
	for _, p := range ps {
		if total <= MaxPlanBytesPerProject {
			return
		}
		if p.ID == keep {
			continue
		}
		for _, h := range []string{p.ID, p.BundleHash} {
			if h != "" && counted[h] && !tx.sharedWithOtherPlan(h, p.ID) {
				total -= len(tx.t.blobs[h])
			}
		}
		tx.dropPlan(p.ID)
	}
}

func (tx *txn) sharedWithOtherPlan(hash, id string) bool {
	for _, p := range tx.t.plans {
		if p.ID != id && (p.ID == hash || p.BundleHash == hash) {
			return true
		}
	}
	return false
}

// capPlans keeps the n newest plans that match, dropping the older ones.
func (tx *txn) capPlans(match func(*PlanRecord) bool, n int) {
	var ps []*PlanRecord
	for _, p := range tx.t.plans {
		if match(p) {
			ps = append(ps, p)
		}
	}
	if len(ps) <= n {
		return
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Index != ps[j].Index {
			return ps[i].Index < ps[j].Index
		}
		return ps[i].ID < ps[j].ID
	})
	for _, p := range ps[:len(ps)-n] {
		tx.dropPlan(p.ID)
	}
}

// dropPlan forgets a plan and deletes its blobs if nothing else refers to
// them.
func (tx *txn) dropPlan(id string) {
	p, ok := tx.t.plans[id]
	if !ok {
		return
	}
	delete(tx.t.plans, id)
	for _, h := range []string{p.ID, p.BundleHash} {
		if h != "" && !tx.blobInUse(h) {
			tx.deleteBlob(h)
		}
	}
}

func (c *ExpirePlans) apply(tx *txn) (any, error) {
	if c.Now.IsZero() {
		return nil, invalid("expire plans: time is zero")
	}
	n := 0
	for _, id := range slices.Sorted(maps.Keys(tx.t.plans)) {
		if p := tx.t.plans[id]; !p.Expires.IsZero() && !p.Expires.After(c.Now) {
			tx.dropPlan(id)
			n++
		}
	}
	return n + tx.collectBlobs(c.Now), nil
}

// collectBlobs deletes the unreferenced blobs put before now-BlobGrace and
// returns how many.
func (tx *txn) collectBlobs(now time.Time) int {
	used := tx.t.usedBlobs()
	n := 0
	for h := range tx.t.blobs {
		if used[h] || now.Sub(tx.t.blobTimes[h]) < BlobGrace {
			continue
		}
		tx.deleteBlob(h)
		n++
	}
	return n
}

// usedBlobs is the set of blobs a stack or a plan refers to.
func (t *tables) usedBlobs() map[string]bool {
	used := make(map[string]bool, len(t.stacks)+2*len(t.plans))
	for _, st := range t.stacks {
		used[st.BundleHash] = true
	}
	for _, p := range t.plans {
		used[p.ID] = true
		if p.BundleHash != "" {
			used[p.BundleHash] = true
		}
	}
	return used
}

func (tx *txn) blobInUse(hash string) bool {
	for _, st := range tx.t.stacks {
		if st.BundleHash == hash {
			return true
		}
	}
	for _, p := range tx.t.plans {
		if p.ID == hash || p.BundleHash == hash {
			return true
		}
	}
	return false
}

func (tx *txn) putBlob(hash string, data []byte, at time.Time) {
	if _, ok := tx.t.blobs[hash]; !ok {
		tx.t.blobs[hash] = data
	}
	// A blob put again is young again (its grace starts over).
	if at.After(tx.t.blobTimes[hash]) {
		tx.t.blobTimes[hash] = at
	}
}

func (tx *txn) deleteBlob(hash string) {
	delete(tx.t.blobs, hash)
	delete(tx.t.blobTimes, hash)
}

// dropStackPlans forgets the plans of a deleted stack.
func (tx *txn) dropStackPlans(project, stack string) {
	for _, id := range slices.Sorted(maps.Keys(tx.t.plans)) {
		if p := tx.t.plans[id]; p.Project == project && p.Stack == stack {
			tx.dropPlan(id)
		}
	}
}

// Plans returns the stored plans of a project ("" for all), oldest first.
func (s *State) Plans(project string) []PlanRecord {
	return getAll(s, func(t *tables) map[string]*PlanRecord { return t.plans },
		func(p *PlanRecord) bool { return project == "" || p.Project == project }, nil,
		func(a, b *PlanRecord) bool {
			if a.Index != b.Index {
				return a.Index < b.Index
			}
			return a.ID < b.ID
		})
}

// BlobStats returns the number of stored blobs and their total size.
func (s *State) BlobStats() (count int, bytes int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, b := range s.t.blobs {
		bytes += int64(len(b))
	}
	return len(s.t.blobs), bytes
}

// GarbageDue reports whether an ExpirePlans at now would delete something
// (the leader proposes one only then).
func (s *State) GarbageDue(now time.Time) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, p := range s.t.plans {
		if !p.Expires.IsZero() && !p.Expires.After(now) {
			return true
		}
	}
	used := s.t.usedBlobs()
	for h := range s.t.blobs {
		if !used[h] && now.Sub(s.t.blobTimes[h]) >= BlobGrace {
			return true
		}
	}
	return false
}

// checkSize refuses a blob or a plan over MaxBlobSize before it is proposed
// (the FSM refuses it too, but then it has been written to every log).
func checkSize(c Command) error {
	var n int
	var what string
	switch c := c.(type) {
	case *PutBlob:
		n, what = len(c.Data), "blob"
	case *PutPlan:
		n, what = len(c.Data), "plan"
	default:
		return nil
	}
	if n > MaxBlobSize {
		return errorf(ErrTooLarge, "%s of %d bytes is over the limit of %d bytes", what, n, MaxBlobSize)
	}
	return nil
}
