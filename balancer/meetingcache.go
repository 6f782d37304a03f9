package balancer

import (
	"context"
	"strings"
	"sync"
	"time"
	"unique"
)

// placementLookback is how far before its last refresh a meeting cache asks
// the store for placements again. A placement's placed_at is the placing
// replica's clock when it placed, not when its transaction committed: on
// PostgreSQL a move stamped before a refresh may commit after it. The
// lookback covers that commit delay plus the clock skew between replicas.
const placementLookback = 5 * time.Second

// maxCachedMeetings bounds a meeting cache; past it, arbitrary entries are
// dropped (a dropped meeting costs one database read at its next join).
const maxCachedMeetings = 200_000

// meetingCache maps meetingID -> node ID for joins, getMeetingInfo,
// isMeetingRunning and end: in steady state they read no database.
//
// Correctness with several replicas: every registry refresh applies the
// placements made (by any replica) since the previous refresh minus
// placementLookback, so a meeting another replica re-placed is joined on its
// new node after at most one refresh. A cached node that is offline is never
// used: the caller reads the store instead. Placements this replica makes or
// deletes update the cache at once. A meeting ended through another replica
// may stay cached; its join goes to the node that held it, which answers that
// the meeting does not exist, as it would have without the cache.
type meetingCache struct {
	mu sync.RWMutex
	// nodes holds each node ID once (a handle of 8 bytes a meeting, not a
	// string copy of its own: 100,000 meetings on 10,000 nodes).
	nodes map[string]unique.Handle[string]
	// since is the placed_at bound of the next refresh's query.
	since time.Time
}

func newMeetingCache() *meetingCache {
	return &meetingCache{nodes: map[string]unique.Handle[string]{}}
}

func (c *meetingCache) get(meetingID string) (string, bool) {
	c.mu.RLock()
	id, ok := c.nodes[meetingID]
	c.mu.RUnlock()
	if !ok {
		return "", false
	}
	return id.Value(), true
}

func (c *meetingCache) put(meetingID, nodeID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.nodes[meetingID]; !ok && len(c.nodes) >= maxCachedMeetings {
		for k := range c.nodes {
			delete(c.nodes, k)
			break
		}
	}
	// A meeting ID parsed from a query shares the whole query's memory
	// (a create's can be kilobytes): the cache keeps a copy of its own.
	c.nodes[strings.Clone(meetingID)] = unique.Make(nodeID)
}

// forget drops a meeting when this replica deleted its placement on nodeID.
func (c *meetingCache) forget(meetingID, nodeID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id, ok := c.nodes[meetingID]; ok && id.Value() == nodeID {
		delete(c.nodes, meetingID)
	}
}

// refresh applies the placements made since the last refresh (minus the
// lookback) to the cached meetings. A failed read leaves since where it was,
// so the next refresh catches up.
func (c *meetingCache) refresh(ctx context.Context, now time.Time, read func(context.Context, time.Time) (map[string]string, error)) error {
	c.mu.RLock()
	since := c.since
	c.mu.RUnlock()
	if since.IsZero() {
		// The first refresh runs before anything is cached.
		c.mu.Lock()
		c.since = now
		c.mu.Unlock()
		return nil
	}
	since = since.Add(-placementLookback)
	placed, err := read(ctx, since)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for m, node := range placed {
		if _, ok := c.nodes[m]; ok {
			c.nodes[m] = unique.Make(node)
		}
	}
	c.since = now
	return nil
}
