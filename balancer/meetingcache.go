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
	// nodes maps each meeting's key to its check and its node's index in
	// ids (meetingKey). A node ID is held once (4 bytes a meeting, not a
	// string of its own: 100,000 meetings on 10,000 nodes), and a meeting
	// ID not at all. The map holds no pointer, so the collector never
	// scans it, and a slot is 16 bytes: 24 B a meeting at 100,000, against
	// 35 B with the check in the key.
	nodes map[uint64]meetingSlot
	ids   nodeIDs
	// since is the placed_at bound of the next refresh's query.
	since time.Time
	// seeds are meetingKey's two hashes' own.
	seeds [2]maphash.Seed
}

// meetingKey stands for a meeting ID in the cache, whatever the ID's length
// (Greenlight's and Moodle's are 40 to 60 characters): a 64-bit hash (the
// map's key) and a 32-bit check from a second hash, both under random seeds
// of this process's own, so nobody outside can aim at a key.
//
// A meeting is found only when both match: an ID that is not cached is
// taken for one that is with a probability of about 10^-24 at 100,000
// meetings. Two cached IDs with one 64-bit hash (about 10^-10 at 100,000)
// cannot both be held: the later one replaces the earlier, whose next join
// reads the store, as for any meeting not cached.
type meetingKey struct {
	hash  uint64
	check uint32
}

// meetingSlot is a cached meeting: its key's check in the high 32 bits, its
// node's index in ids in the low ones.
type meetingSlot uint64

func newSlot(check, node uint32) meetingSlot { return meetingSlot(check)<<32 | meetingSlot(node) }
func (s meetingSlot) check() uint32          { return uint32(s >> 32) }
func (s meetingSlot) node() uint32           { return uint32(s) }

func newMeetingCache() *meetingCache {
	return &meetingCache{nodes: map[uint64]meetingSlot{}, ids: nodeIDs{index: map[string]uint32{}},
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
	return meetingKey{maphash.String(c.seeds[0], meetingID), uint32(maphash.String(c.seeds[1], meetingID))}
}

// lookup is the index in ids of the meeting of key k's node; c.mu held.
func (c *meetingCache) lookup(k meetingKey) (uint32, bool) {
	s, ok := c.nodes[k.hash]
	if !ok || s.check() != k.check {
		return 0, false
	}
	return s.node(), true
}

func (c *meetingCache) get(meetingID string) (string, bool) {
	k := c.key(meetingID)
	c.mu.RLock()
	defer c.mu.RUnlock()
	i, ok := c.lookup(k)
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

// set caches the meeting of key k on nodeID; c.mu held. A meeting whose
// key shares k's hash but not its check is dropped (meetingKey).
func (c *meetingCache) set(k meetingKey, nodeID string) {
	old, ok := c.nodes[k.hash]
	switch {
	case ok && old.check() == k.check && c.ids.ids[old.node()] == nodeID:
		return
	case ok:
		c.ids.unref(old.node())
	case len(c.nodes) >= maxCachedMeetings:
		for h, s := range c.nodes {
			delete(c.nodes, h)
			c.ids.unref(s.node())
			break
		}
	}
	c.nodes[k.hash] = newSlot(k.check, c.ids.ref(nodeID))
}

// forget drops a meeting when this replica deleted its placement on nodeID.
func (c *meetingCache) forget(meetingID, nodeID string) {
	k := c.key(meetingID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, ok := c.lookup(k); ok && c.ids.ids[i] == nodeID {
		delete(c.nodes, k.hash)
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
		if _, cached := c.lookup(k); cached {
			c.set(k, node)
		}
	}
	c.since = now
	return nil
}
