package balancer

import (
	"runtime"
	"sync/atomic"
)

// transientCollector runs a garbage collection after work that holds
// megabytes for a moment: a /metrics scrape of a large fleet (the nodes'
// copy and the compressor, ~2 MB), a render of the dashboard's live part
// (the template's output and its compressed copy, several MB), a list of
// every server (admin and Scalelite API: ~1 KB a node, 10 MB at 10,000
// nodes, though only a chunk of it live at a time). A
// collection that runs during such work (at rest, its own allocations
// start one) counts all of it as live and sets the heap's next goal by it,
// a quarter higher at serve's GOGC: the process keeps that much more
// memory until the next collection, which, with nothing else allocating,
// is the runtime's forced one two minutes later. A collection right after
// sets the goal by what outlives the work. It costs about what one
// collection of the fleet's heap costs (~10 ms of CPU at 10,000 nodes),
// once a scrape, a render or a list.
type transientCollector struct {
	collect func() // runtime.GC; a test's own
	running atomic.Bool
}

func newTransientCollector() *transientCollector {
	return &transientCollector{collect: runtime.GC}
}

// after starts a collection unless one it started still runs, and returns
// at once.
func (c *transientCollector) after() {
	if !c.running.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer c.running.Store(false)
		c.collect()
	}()
}
