package balancer

import (
	"context"
	"hash/maphash"
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
	// nodes maps each meeting's key to its node. A node ID is held once (a
	// handle of 8 bytes a meeting, not a string of its own: 100,000
	// meetings on 10,000 nodes), and a meeting ID not at all (meetingKey).
	nodes map[meetingKey]unique.Handle[string]
	// since is the placed_at bound of the next refresh's query.
	since time.Time
	// seeds are meetingKey's two hashes' own.
	seeds [2]maphash.Seed
}

// meetingKey stands for a meeting ID in the cache: 128 bits of two hashes
// under seeds of this process's own, 16 bytes whatever the ID's length
// (Greenlight's and Moodle's are 40 to 60 characters). Two IDs of 100,000
// share a key with a probability of about 10^-29, and nobody outside can
// aim at one: the seeds are random.
type meetingKey [2]uint64

func newMeetingCache() *meetingCache {
	return &meetingCache{nodes: map[meetingKey]unique.Handle[string]{}, seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}
}

func (c *meetingCache) key(meetingID string) meetingKey {
	return meetingKey{maphash.String(c.seeds[0], meetingID), maphash.String(c.seeds[1], meetingID)}
}

func (c *meetingCache) get(meetingID string) (string, bool) {
	k := c.key(meetingID)
	c.mu.RLock()
	id, ok := c.nodes[k]
	c.mu.RUnlock()
	if !ok {
		return "", false
	}
	return id.Value(), true
}

func (c *meetingCache) put(meetingID, nodeID string) {
	k, node := c.key(meetingID), unique.Make(nodeID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.nodes[k]; !ok && len(c.nodes) >= maxCachedMeetings {
		for k := range c.nodes {
			delete(c.nodes, k)
			break
		}
	}
	c.nodes[k] = node
}

// forget drops a meeting when this replica deleted its placement on nodeID.
func (c *meetingCache) forget(meetingID, nodeID string) {
	k := c.key(meetingID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if id, ok := c.nodes[k]; ok && id.Value() == nodeID {
		delete(c.nodes, k)
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
		k := c.key(m)
		if _, ok := c.nodes[k]; ok {
			c.nodes[k] = unique.Make(node)
		}
	}
	c.since = now
	return nil
}
