package balancer

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"
)

// pruneTimeout bounds one pruning of one node's placements.
const pruneTimeout = 10 * time.Second

// pruneQueue holds the prunings that reports asked for and one goroutine
// has not done yet: the newest meeting set per node. When every agent
// reports at once (a balancer restart, 10,000 nodes within one interval),
// one goroutine works through them instead of one goroutine each, all
// queued on the database.
type pruneQueue struct {
	mu      sync.Mutex
	pending map[string]pruneRequest // by node ID
	working bool                    // a goroutine is draining pending
}

type pruneRequest struct {
	running      []string
	placedBefore time.Time
}

// prune forgets placements on a node that it no longer runs, leaving those
// placed after placedBefore (their create may still be on its way). A
// failure is logged, and returned for the queue.
func (s *Server) prune(ctx context.Context, nodeID string, running []string, placedBefore time.Time) error {
	n, err := s.store.PruneMeetings(ctx, nodeID, running, placedBefore)
	if err != nil {
		s.log.Warn("pruning ended meetings", "node", nodeID, "err", err)
		return err
	}
	if n > 0 {
		s.log.Debug("pruned ended meetings", "node", nodeID, "count", n)
	}
	return nil
}

// pruneAsync queues a pruning of the node's placements; a newer one for the
// same node replaces it.
func (s *Server) pruneAsync(nodeID string, running []string, placedBefore time.Time) {
	q := &s.prunes
	q.mu.Lock()
	if q.pending == nil {
		q.pending = make(map[string]pruneRequest)
	}
	q.pending[nodeID] = pruneRequest{running: running, placedBefore: placedBefore}
	start := !q.working
	q.working = true
	q.mu.Unlock()
	if start {
		s.bg.Go(s.drainPrunes)
	}
}

// drainPrunes does the queued prunings until none is left.
func (s *Server) drainPrunes() {
	q := &s.prunes
	for {
		q.mu.Lock()
		batch := q.pending
		q.pending = nil
		if len(batch) == 0 {
			q.working = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		done := 0
		for id, p := range batch {
			done++
			ctx, cancel := context.WithTimeout(context.Background(), pruneTimeout)
			err := s.prune(ctx, id, p.running, p.placedBefore)
			cancel()
			if err != nil {
				// The database is failing: the rest of this batch would
				// wait pruneTimeout each (a shutdown too). Their nodes'
				// next reports ask again within pruneEvery (the done
				// ones' too: which of them failed is not kept).
				s.log.Warn("the other nodes' prunings wait for their next reports", "skipped", len(batch)-done)
				s.reg.prunesFailed(slices.Collect(maps.Keys(batch)))
				break
			}
		}
	}
}
