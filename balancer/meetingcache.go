package balancer

import (
	"context"
	"hash/maphash"
	"strings"
	"sync"
	"time"
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
	// nodes maps each meeting's key to its node's index in ids. A node ID
	// is held once (4 bytes a meeting, not a string of its own: 100,000
	// meetings on 10,000 nodes), and a meeting ID not at all (meetingKey).
	// The map holds no pointer, so the collector never scans it.
	nodes map[meetingKey]uint32
	ids   nodeIDs
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
	return &meetingCache{nodes: map[meetingKey]uint32{}, ids: nodeIDs{index: map[string]uint32{}},
		seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}
}

// nodeIDs holds the node IDs a meeting cache refers to, each once, by an
// index, with the number of cached meetings on it: an ID goes when the last
// of its meetings does (an auto-scaled fleet's nodes come and go).
type nodeIDs struct {
	index map[string]uint32
	ids   []string // by index; "" for a free slot
	refs  []int32  // by index: the cached meetings on the node
	free  []uint32 // the free slots
}

// ref counts one more meeting on the node and returns its index.
func (t *nodeIDs) ref(id string) uint32 {
	i, ok := t.index[id]
	if !ok {
		id = strings.Clone(id) // kept for long: not a part of a larger string
		if n := len(t.free); n > 0 {
			i, t.free = t.free[n-1], t.free[:n-1]
			t.ids[i] = id
		} else {
			i = uint32(len(t.ids))
			t.ids, t.refs = append(t.ids, id), append(t.refs, 0)
		}
		t.index[id] = i
	}
	t.refs[i]++
	return i
}

// unref counts one meeting less on the node at index i.
func (t *nodeIDs) unref(i uint32) {
	if t.refs[i]--; t.refs[i] == 0 {
		delete(t.index, t.ids[i])
		t.ids[i] = ""
		t.free = append(t.free, i)
	}
}

func (c *meetingCache) key(meetingID string) meetingKey {
	return meetingKey{maphash.String(c.seeds[0], meetingID), maphash.String(c.seeds[1], meetingID)}
}

func (c *meetingCache) get(meetingID string) (string, bool) {
	k := c.key(meetingID)
	c.mu.RLock()
	defer c.mu.RUnlock()
	i, ok := c.nodes[k]
	if !ok {
		return "", false
	}
	return c.ids.ids[i], true
}

func (c *meetingCache) put(meetingID, nodeID string) {
	k := c.key(meetingID)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.set(k, nodeID)
}

// set caches the meeting of key k on nodeID; c.mu held.
func (c *meetingCache) set(k meetingKey, nodeID string) {
	old, ok := c.nodes[k]
	switch {
	case ok && c.ids.ids[old] == nodeID:
		return
	case ok:
		c.ids.unref(old)
	case len(c.nodes) >= maxCachedMeetings:
		for k, i := range c.nodes {
			delete(c.nodes, k)
			c.ids.unref(i)
			break
		}
	}
	c.nodes[k] = c.ids.ref(nodeID)
}

// forget drops a meeting when this replica deleted its placement on nodeID.
func (c *meetingCache) forget(meetingID, nodeID string) {
	k := c.key(meetingID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, ok := c.nodes[k]; ok && c.ids.ids[i] == nodeID {
		delete(c.nodes, k)
		c.ids.unref(i)
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
		if _, cached := c.nodes[k]; cached {
			c.set(k, node)
		}
	}
	c.since = now
	return nil
}
