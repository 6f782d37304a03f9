package balancer

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/balancer/placement"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/balancer/store"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// registry is this replica's in-memory view of the fleet. Reports land here
// first and reach the store in batches; placement reads only memory. A
// periodic refresh from the store brings in what other replicas changed.
type registry struct {
	store *store.Store
	cfg   *Config

	mu     sync.RWMutex
	byID   map[string]*entry
	byName map[string]string
	// byCred finds a node by the hash of its credential.
	byCred map[string]string
	// turn holds the TURN nodes, a handful among thousands of BBB nodes:
	// every report's answer lists them.
	turn map[string]*entry
	// pending are the entries holding a report the store has not yet
	// (entry.pending set): the report is the entry's own newest, so 10,000
	// nodes queue 8 bytes each, not a copy of each report.
	pending []*entry
	// flushing is flush's batch, kept between flushes: each copies
	// 2,000 reports of 250 bytes at 10,000 nodes, every second.
	flushing []records.Report
	gen      uint64 // counts refreshes
	// cursor is where the next refresh reads the store's node changes
	// from (store.NodeChanges).
	cursor int64
	// own are the markers of this replica's flushed reports at or after
	// the cursor: the refresh leaves those rows out (it holds the reports).
	own []int64
	// longest is the longest report interval in the fleet at the last
	// refresh (see refresh's placedAfter).
	longest time.Duration
	// meetings caches meetingID -> node ID; refresh keeps it current.
	meetings *meetingCache
}

type entry struct {
	node records.Node
	// reserved counts meetings placed on the node that no report reflects yet.
	reserved int32
	// seqSet: run and seq below hold an accepted report's.
	seqSet bool
	// pending: the node's report waits in registry.pending for the store.
	pending bool
	// gen is the refresh that last read the node from the store, and
	// stored the report time it read.
	gen    uint64
	stored instant
	// run and seq are the agent run and the highest seq this replica has
	// accepted from it: within a run, seq never goes backwards.
	run string
	seq int64
	// unhealthy says why placement avoids the node (it refused the
	// balancer's checksum); a registration clears it, and for an
	// operator-added node so does a poll that answers.
	unhealthy string
	// pollErr says why the last poll of an operator-added node failed
	// (fleet.BBBReason's words), "" when it answered: the node is offline
	// until a poll answers again, so a dead polled node leaves the rotation
	// within one poll interval plus the node timeout (15 s at the
	// defaults), not after its missed polls.
	pollErr string
	// logged is the health reason the log last said ("" healthy), and
	// seen when this replica first looked: the log says each change once.
	logged string
	seen   instant
	// pruned is a hash of the meeting set the last pruning of the node's
	// placements went by, prunedAt when it ran, and prunedBefore the
	// placement time it pruned up to (shouldPrune).
	pruned       uint64
	prunedAt     instant
	prunedBefore instant
	// placed is when this replica last learnt of a placement on the node:
	// its own at once (reserve), any replica's at the refresh after it
	// (notePlacements). An entry of the first refresh starts with the
	// node's newest placement in the store (one committed late, within
	// placementLookback, is learnt at the next refresh); a later one with
	// when it was made, as placements from before then are not known.
	placed instant
}

// instant is a time as an entry keeps it: Unix nanoseconds, 8 bytes where a
// time.Time takes 24 (an entry is 592 bytes, not 672: 0.8 MB at 10,000
// nodes). The zero time is 0, before every time the registry meets.
type instant int64

func instantOf(t time.Time) instant {
	if t.IsZero() {
		return 0
	}
	return instant(t.UnixNano())
}

func (i instant) isZero() bool { return i == 0 }

// since is how long before now the instant was.
func (i instant) since(now time.Time) time.Duration { return now.Sub(time.Unix(0, int64(i))) }

// online says whether the node is online now.
func (e *entry) online(now time.Time, missed int) bool {
	return e.pollErr == "" && e.node.Liveness(now, missed) == fleet.Online
}

// reason says why the node is not healthy now, "" when it is: in
// fleet.ReasonClass's words, stable while the cause lasts (the log says
// each change once).
func (e *entry) reason(now time.Time, missed int) string {
	switch {
	case e.unhealthy != "":
		if fleet.ReasonClass(e.unhealthy) == fleet.ChecksumError {
			return fleet.ReasonChecksum
		}
		return e.unhealthy
	case e.pollErr != "":
		return e.pollErr
	}
	n := &e.node
	polled := n.Source == records.SourcePoll
	if n.Liveness(now, missed) == fleet.Offline {
		switch {
		case n.LastReportAt.IsZero() && polled:
			return "offline: no poll answered yet"
		case n.LastReportAt.IsZero():
			return "offline: never reported"
		case polled:
			return fmt.Sprintf("offline: no poll answered for over %s", time.Duration(missed)*n.ReportInterval)
		}
		return fmt.Sprintf("offline: no report for over %s (%d report intervals)", time.Duration(missed)*n.ReportInterval, missed)
	}
	if n.Role == fleet.RoleTURN {
		if !n.Load.TURNHealthy {
			return "TURN: the node fails its own STUN/TURN probe"
		}
		return ""
	}
	if !n.Load.BBBHealthy {
		if n.Load.BBBError == "" {
			return "BBB error: the agent reports BBB unhealthy without a reason (an older agent; its log says why)"
		}
		return n.Load.BBBError // bounded by report
	}
	return ""
}

func newRegistry(st *store.Store, cfg *Config) *registry {
	return &registry{store: st, cfg: cfg, byID: map[string]*entry{}, byName: map[string]string{}, byCred: map[string]string{}, turn: map[string]*entry{},
		meetings: newMeetingCache()}
}

// errUnknownNode means no node has that name (or ID).
var errUnknownNode = errors.New("unknown node")

// errSeqBackwards means a report's seq is lower than one already accepted
// from the same agent run.
var errSeqBackwards = errors.New("seq went backwards")

// fullRefreshEvery is how often refresh reads the whole fleet rather than
// what changed: a backstop that also drops nodes whose tombstone it never
// saw (a replica that slept past tombstoneTTL). Every 5 minutes at the
// default refresh interval: reading 10,000 nodes takes about a quarter of
// a CPU second.
const fullRefreshEvery = 300

// refresh brings in what the store has that this replica does not: the
// nodes changed since the last refresh (store.NodeChanges), the whole
// fleet every fullRefreshEvery refreshes, and the reservations. Local
// reports newer than the stored ones (not flushed yet) are kept. Entries
// are updated in place: refreshes run every second.
func (r *registry) refresh(ctx context.Context) error {
	now := r.cfg.Clock()
	var learnt map[string]string // the placements since the last refresh
	err := r.meetings.refresh(ctx, now, func(ctx context.Context, since time.Time) (map[string]string, error) {
		var err error
		learnt, err = r.placedSince(ctx, since)
		return learnt, err
	})
	if err != nil {
		return err
	}
	r.notePlacements(learnt, now)
	r.mu.RLock()
	cursor, own, first := r.cursor, slices.Clone(r.own), r.gen == 0
	if r.gen%fullRefreshEvery == 0 {
		cursor = 0
	}
	// Only online nodes take meetings, and an online node reported within
	// MissedReports of its interval: placements older than that are
	// behind every online node's report and reserve nothing, so the
	// store reads only the newer ones. (An offline node's Reserved then
	// counts only those; its next report resets it anyway.)
	var placedAfter time.Time
	if r.longest > 0 {
		placedAfter = r.cfg.Clock().Add(-time.Duration(r.cfg.MissedReports) * r.longest)
	}
	r.mu.RUnlock()
	ch, err := r.store.NodeChanges(ctx, cursor, own...)
	if err != nil {
		return err
	}
	// The entries made at the first refresh know their nodes' newest
	// placement (entry.placed): the minute after a start then prunes
	// no node a second time that took no meeting just before it.
	var newest map[string]time.Time
	if first {
		if newest, err = r.store.NewestPlacements(ctx); err != nil {
			return err
		}
	}
	placed, err := r.store.PlacedSince(ctx, placedAfter)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	r.cursor = ch.Next
	r.own = slices.DeleteFunc(r.own, func(m int64) bool { return m < ch.Next })
	if ch.Full {
		r.byName = make(map[string]string, len(ch.Nodes))
		r.byCred = make(map[string]string)
		r.turn = make(map[string]*entry)
	}
	for _, id := range ch.Deleted {
		r.drop(id)
	}
	for _, n := range ch.Nodes {
		n = r.withDefaults(n)
		e, ok := r.byID[n.ID]
		if !ok {
			e = &entry{placed: instantOf(now)}
			if newest != nil {
				e.placed = instantOf(newest[n.ID]) // 0: none
			}
			r.byID[n.ID] = e
		}
		e.stored = instantOf(n.LastReportAt)
		if e.node.LastReportAt.After(n.LastReportAt) {
			n.LastReportAt, n.LastSeq, n.Load = e.node.LastReportAt, e.node.LastSeq, e.node.Load
		}
		r.index(e, n)
		e.node, e.gen = n, r.gen
	}
	r.longest = 0
	for id, e := range r.byID {
		if ch.Full && e.gen != r.gen {
			r.drop(id)
			continue
		}
		r.longest = max(r.longest, e.node.ReportInterval)
		reserved := placed[id]
		if instantOf(e.node.LastReportAt) > e.stored {
			// Placements after our newer report are what is still
			// reserved; the store counted against its older one, so keep
			// the smaller.
			reserved = min(reserved, int(e.reserved))
		}
		e.reserved = int32(reserved)
	}
	return nil
}

// index files the entry under n's name, credential and role, dropping what
// it was filed under before. r.mu is held.
func (r *registry) index(e *entry, n records.Node) {
	if e.node.Name != "" && e.node.Name != n.Name && r.byName[e.node.Name] == n.ID {
		delete(r.byName, e.node.Name)
	}
	if e.node.CredentialHash != "" && e.node.CredentialHash != n.CredentialHash && r.byCred[e.node.CredentialHash] == n.ID {
		delete(r.byCred, e.node.CredentialHash)
	}
	r.byName[n.Name] = n.ID
	if n.CredentialHash != "" {
		r.byCred[n.CredentialHash] = n.ID
	}
	if n.Role == fleet.RoleTURN {
		r.turn[n.ID] = e
	} else {
		delete(r.turn, n.ID)
	}
}

// notePlacements notes, on the nodes that placed (meeting ID -> node ID)
// names, that a placement was learnt of at now (entry.placed).
func (r *registry) notePlacements(placed map[string]string, now time.Time) {
	if len(placed) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range placed {
		if e, ok := r.byID[id]; ok {
			e.placed = max(e.placed, instantOf(now))
		}
	}
}

// placedSince reads the placements made since a time, by meeting ID.
func (r *registry) placedSince(ctx context.Context, since time.Time) (map[string]string, error) {
	ms, err := r.store.MeetingsPlacedSince(ctx, since)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(ms))
	for _, m := range ms {
		out[m.MeetingID] = m.NodeID
	}
	return out, nil
}

func (r *registry) withDefaults(n records.Node) records.Node {
	if n.ReportInterval <= 0 {
		if n.Source == records.SourcePoll {
			n.ReportInterval = r.cfg.PollInterval
		} else {
			n.ReportInterval = r.cfg.DefaultReportInterval
		}
	}
	return n
}

// put stores a node fresh from the store (registration, state change).
func (r *registry) put(n records.Node) {
	n = r.withDefaults(n)
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byID[n.ID]
	if !ok {
		e = &entry{placed: instantOf(r.cfg.Clock())}
		r.byID[n.ID] = e
	}
	if at := instantOf(n.LastReportAt); at > e.stored {
		e.stored = at
	}
	r.longest = max(r.longest, n.ReportInterval)
	if e.node.LastReportAt.After(n.LastReportAt) {
		n.LastReportAt, n.LastSeq, n.Load = e.node.LastReportAt, e.node.LastSeq, e.node.Load
	}
	r.index(e, n)
	e.node = n
}

func (r *registry) remove(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drop(id)
}

// drop forgets the node. r.mu is held.
func (r *registry) drop(id string) {
	if e, ok := r.byID[id]; ok {
		if r.byName[e.node.Name] == id {
			delete(r.byName, e.node.Name)
		}
		if r.byCred[e.node.CredentialHash] == id {
			delete(r.byCred, e.node.CredentialHash)
		}
		delete(r.byID, id)
		delete(r.turn, id)
		e.pending = false // and flush skips it, no longer in byID
	}
}

// byNodeName returns the node with that name.
func (r *registry) byNodeName(name string) (records.Node, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	id, ok := r.byName[name]
	if !ok {
		return records.Node{}, false
	}
	return r.byID[id].node, true
}

// byCredential returns the node whose credential has the hash (hex, as
// credentialHash writes it).
func (r *registry) byCredential(hash *[sha256.Size * 2]byte) (records.Node, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	id, ok := r.byCred[string(hash[:])]
	if !ok {
		return records.Node{}, false
	}
	return r.byID[id].node, true
}

// registered notes a registration of the node: the agent starts a new run
// (its seq starts again) and whatever made placement avoid it is gone.
func (r *registry) registered(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.byID[id]; ok {
		e.seqSet, e.unhealthy = false, ""
	}
}

// markUnhealthy makes placement avoid the node until it registers again (or,
// operator-added, answers a poll); it says whether the node was healthy
// until now.
func (r *registry) markUnhealthy(id, reason string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byID[id]
	if !ok || e.unhealthy != "" {
		return false
	}
	e.unhealthy = reason
	return true
}

// node returns a node by ID and whether it is online now.
func (r *registry) node(id string) (records.Node, bool, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.byID[id]
	if !ok {
		return records.Node{}, false, false
	}
	return e.node, e.online(r.cfg.Clock(), r.cfg.MissedReports), true
}

// report applies a load report in memory and queues it for the store. It
// returns the node as it now stands. Within one agent run seq may repeat (a
// retry) but not go backwards; an agent without a run ID (older agents)
// starts again at 1.
func (r *registry) report(name, run string, seq int64, load fleet.Load) (records.Node, error) {
	now := r.cfg.Clock()
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok := r.byName[name]
	if !ok {
		return records.Node{}, fmt.Errorf("%w %q", errUnknownNode, name)
	}
	e := r.byID[id]
	if err := r.accept(e, run, seq, &load, now); err != nil {
		return e.node, err
	}
	return e.node, nil
}

// reportedNode is what reportInline needs of a report's node.
type reportedNode struct {
	id       string
	state    fleet.AdminState
	interval time.Duration
}

// reportByCredential is report for a node speaking for itself, by the hash
// of its credential: it applies the report only when that credential's
// node is the one named (as agentAuth and speaksFor check), not cordoned,
// and the report in order. Otherwise it applies nothing and says false.
func (r *registry) reportByCredential(hash *[sha256.Size * 2]byte, name, run string, seq int64, load *fleet.Load) (reportedNode, bool) {
	now := r.cfg.Clock()
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.byCred[string(hash[:])]
	e, ok := r.byID[id]
	if !ok || e.node.Name != name || r.byName[name] != id || e.node.State == fleet.Cordoned {
		return reportedNode{}, false
	}
	if r.accept(e, run, seq, load, now) != nil {
		return reportedNode{}, false
	}
	return reportedNode{id: id, state: e.node.State, interval: e.node.ReportInterval}, true
}

// accept applies a report to its node's entry, unless it goes back in its
// agent run. r.mu is held.
func (r *registry) accept(e *entry, run string, seq int64, load *fleet.Load, now time.Time) error {
	sameRun := e.seqSet && e.run == run && !(run == "" && seq == 1)
	if sameRun && seq < e.seq {
		return fmt.Errorf("%w: %d after %d", errSeqBackwards, seq, e.seq)
	}
	e.run, e.seq, e.seqSet = run, seq, true
	if load.BBBError != "" {
		load.BBBError = fleet.CleanReason(load.BBBError) // one bounded line, whatever the agent sent
	}
	e.node.LastReportAt, e.node.LastSeq, e.node.Load = now, seq, *load
	e.reserved = 0
	r.queue(e)
	return nil
}

// pruneEvery is how often a node's placements are pruned while the set of
// meetings it reports stays the same but a placement was made on it since
// the last pruning: a placement whose create never reached the node (the
// only kind an unchanged set can leave behind) goes within it.
const pruneEvery = time.Minute

// shouldPrune says whether a report's running meetings call for pruning
// the node's placements placed before placedBefore (store.PruneMeetings, a
// database read, and a write when one is stale): when the set changed since
// the last pruning, or pruneEvery has passed and this replica learnt of a
// placement on the node at or after the last pruning's placedBefore (one
// that pruning could not take). Agents send their meetings with every
// report, and most reports repeat the last set: at 10,000 nodes, pruning
// each once a minute regardless was 10,000 reads a minute, a tenth of a
// core for the seconds they ran in. A yes counts as the pruning done
// (prunesFailed undoes it).
func (r *registry) shouldPrune(id string, running []string, placedBefore time.Time) bool {
	// The sum of the IDs' hashes: the set's, whatever order it came in.
	var sum uint64
	for _, m := range running {
		sum += fnv64a(m)
	}
	now := r.cfg.Clock()
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byID[id]
	if !ok {
		return true
	}
	if e.pruned == sum && (e.prunedAt.since(now) < pruneEvery || e.placed < e.prunedBefore) {
		return false
	}
	e.pruned, e.prunedAt, e.prunedBefore = sum, instantOf(now), instantOf(placedBefore)
	return true
}

// prunesFailed notes that the prunings of these nodes' placements that
// shouldPrune asked for did not happen: their nodes' next reports after
// pruneEvery ask again, whatever was placed.
func (r *registry) prunesFailed(ids []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		if e, ok := r.byID[id]; ok {
			e.prunedBefore = 0
		}
	}
}

// maxOwnMarks bounds registry.own (store.NodeChanges takes at most 16).
const maxOwnMarks = 16

// fnv64a is the 64-bit FNV-1a hash of s.
func fnv64a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// polled applies the result of polling an operator-added node. An answer
// to a getMeetings signed with the node's secret also shows that the node
// accepts the balancer's checksum again.
func (r *registry) polled(id string, at time.Time, load fleet.Load) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.byID[id]; ok && at.After(e.node.LastReportAt) {
		e.node.LastReportAt, e.node.Load = at, load
		e.reserved, e.pollErr, e.unhealthy = 0, "", ""
	}
}

// pollFailed notes why a poll of an operator-added node failed (a
// fleet.BBBReason): the node is offline until a poll answers again.
func (r *registry) pollFailed(id, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.byID[id]; ok {
		e.pollErr = cmp.Or(reason, "BBB error: the poll failed")
	}
}

// healthChange is a change of a node's health reason since the log last
// said it.
type healthChange struct {
	node        string
	reason, was string
}

// healthChanges lists the nodes whose health reason changed since the last
// call (of ids only, when given), and notes the new ones as said. A node
// this replica has just learnt of is not called offline for not having
// reported yet until it had the time to.
func (r *registry) healthChanges(ids ...string) []healthChange {
	now := r.cfg.Clock()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []healthChange
	check := func(e *entry) {
		if e.seen.isZero() {
			e.seen = instantOf(now)
		}
		reason := r.healthReason(e, now)
		if reason == e.logged {
			return
		}
		if e.logged == "" && e.node.LastReportAt.IsZero() && e.pollErr == "" && e.unhealthy == "" &&
			e.seen.since(now) <= time.Duration(r.cfg.MissedReports)*e.node.ReportInterval {
			return // not reported yet, but not late either
		}
		out = append(out, healthChange{node: e.node.Name, reason: reason, was: e.logged})
		e.logged = reason
	}
	if len(ids) > 0 {
		for _, id := range ids {
			if e, ok := r.byID[id]; ok {
				check(e)
			}
		}
		return out
	}
	for _, e := range r.byID {
		check(e)
	}
	return out
}

// healthReason is e.reason at the registry's settings.
func (r *registry) healthReason(e *entry, now time.Time) string {
	return e.reason(now, r.cfg.MissedReports)
}

// flush writes the queued reports to the store in one batch.
func (r *registry) flush(ctx context.Context) error {
	r.mu.Lock()
	if len(r.pending) == 0 {
		r.mu.Unlock()
		return nil
	}
	batch := r.flushing[:0]
	r.flushing = nil // a flush meanwhile has one of its own
	for _, e := range r.pending {
		if e.pending && r.byID[e.node.ID] == e { // not dropped meanwhile
			batch = append(batch, records.Report{NodeID: e.node.ID, Seq: e.node.LastSeq, ReceivedAt: e.node.LastReportAt, Load: e.node.Load})
		}
		e.pending = false
	}
	clear(r.pending) // its storage serves the next second's reports
	r.pending = r.pending[:0]
	if len(batch) == 0 {
		r.keepFlushing(batch)
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	mark, err := r.store.RecordReports(ctx, batch)
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.keepFlushing(batch)
	if err != nil {
		// Queue them again; an entry holds its newest report, whether
		// this one or one that arrived meanwhile.
		for _, rep := range batch {
			if e, ok := r.byID[rep.NodeID]; ok {
				r.queue(e)
			}
		}
		return err
	}
	// The store holds these reports now (or newer ones, whose rows the
	// next refresh reads): what its placement counts go by.
	for _, rep := range batch {
		e, ok := r.byID[rep.NodeID]
		if at := instantOf(rep.ReceivedAt); ok && at > e.stored {
			e.stored = at
		}
	}
	if mark >= r.cursor {
		// Bounded while refreshes fail: a marker dropped only means its
		// rows are read again.
		r.own = append(r.own[max(0, len(r.own)-maxOwnMarks+1):], mark)
	}
	return nil
}

// maxKeptFlush bounds the batch kept between flushes (about 250 bytes a
// report, live for as long as the balancer runs): 4,096 is a second of
// 20,000 nodes reporting every 5 s. The flush after a restart, when the
// whole fleet reports at once, is not kept (2.5 MB at 10,000 nodes).
const maxKeptFlush = 4096

// keepFlushing keeps a flush's batch for the next one; r.mu is held.
func (r *registry) keepFlushing(batch []records.Report) {
	if cap(batch) > maxKeptFlush {
		return
	}
	clear(batch) // its strings go, not kept for a second
	r.flushing = batch[:0]
}

// queue marks the entry's report for the next flush. r.mu is held.
func (r *registry) queue(e *entry) {
	if !e.pending {
		e.pending = true
		r.pending = append(r.pending, e)
	}
}

// reserve notes a meeting placed on the node.
func (r *registry) reserve(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.byID[id]; ok {
		e.reserved++
		e.placed = max(e.placed, instantOf(r.cfg.Clock()))
	}
}

// pick runs the placement policy over the fleet in place, under the read
// lock: no copy of the fleet per create, only the chosen node is copied. A
// node that refused the balancer's checksum, or is excluded, takes no new
// meetings.
func (r *registry) pick(p placement.Policy, req placement.TagRequest, excluded map[string]bool) (placement.Decision, error) {
	now := r.cfg.Clock()
	r.mu.RLock()
	defer r.mu.RUnlock()
	k := p.Picker(req)
	for id, e := range r.byID {
		online := e.unhealthy == "" && !excluded[id] && e.online(now, r.cfg.MissedReports)
		k.Add(&e.node, online, int(e.reserved))
	}
	return k.Decision()
}

// appendTURNServers appends the online, enabled and healthy TURN nodes to
// out, sorted by name.
func (r *registry) appendTURNServers(out []agentapi.TURNServer) []agentapi.TURNServer {
	now, start := r.cfg.Clock(), len(out)
	r.mu.RLock()
	for _, e := range r.turn {
		// A TURN node that cannot allocate with the fleet's secret is not live.
		if e.node.State == fleet.Enabled && e.node.Load.TURNHealthy && e.online(now, r.cfg.MissedReports) {
			out = append(out, agentapi.TURNServer{Node: e.node.Name, URIs: e.node.TURNURIs})
		}
	}
	r.mu.RUnlock()
	slices.SortFunc(out[start:], func(a, b agentapi.TURNServer) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// nodeView is a node with what the registry derives about it.
type nodeView struct {
	records.Node
	Online   bool
	Reserved int
	// Reason says why the node is not healthy, "" when it is (entry.reason).
	Reason string
}

// view returns one node as snapshot shows it.
func (r *registry) view(id string) (nodeView, bool) {
	now := r.cfg.Clock()
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.byID[id]
	if !ok {
		return nodeView{}, false
	}
	return r.viewOf(e, now), true
}

// viewOf is the entry's node as snapshot shows it. r.mu is held.
func (r *registry) viewOf(e *entry, now time.Time) nodeView {
	return nodeView{Node: e.node, Online: e.online(now, r.cfg.MissedReports), Reserved: int(e.reserved), Reason: r.healthReason(e, now)}
}

// find returns the node with the ID or, failing that, the name, as
// snapshot shows it: one node's copy, not the fleet's.
func (r *registry) find(idOrName string) (nodeView, bool) {
	now := r.cfg.Clock()
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.byID[idOrName]
	if !ok {
		e, ok = r.byID[r.byName[idOrName]]
	}
	if !ok {
		return nodeView{}, false
	}
	return r.viewOf(e, now), true
}

// idsByName lists the IDs of the nodes keep keeps (all with nil), in the
// order of their names.
func (r *registry) idsByName(keep func(*records.Node) bool) []string {
	type named struct{ name, id string }
	r.mu.RLock()
	all := make([]named, 0, len(r.byID))
	for id, e := range r.byID {
		if keep == nil || keep(&e.node) {
			all = append(all, named{e.node.Name, id})
		}
	}
	r.mu.RUnlock()
	slices.SortFunc(all, func(a, b named) int { return strings.Compare(a.name, b.name) })
	ids := make([]string, len(all))
	for i, n := range all {
		ids[i] = n.id
	}
	return ids
}

// views returns the nodes of ids as snapshot shows them, sorted by name; an
// ID of no node is left out.
func (r *registry) views(ids []string) []nodeView {
	now := r.cfg.Clock()
	out := make([]nodeView, 0, len(ids))
	r.mu.RLock()
	for _, id := range ids {
		if e, ok := r.byID[id]; ok {
			out = append(out, r.viewOf(e, now))
		}
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b nodeView) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// polledNodes lists the operator-added nodes, which the balancer polls.
func (r *registry) polledNodes() []records.Node {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []records.Node
	for _, e := range r.byID {
		if e.node.Source == records.SourcePoll {
			out = append(out, e.node)
		}
	}
	return out
}

// bbbNode is what getMeetings needs of a node to ask it.
type bbbNode struct{ ID, Name, URL, Secret string }

// record is the node as nodeMeetings takes it.
func (n bbbNode) record() records.Node {
	return records.Node{ID: n.ID, Name: n.Name, URL: n.URL, Secret: n.Secret}
}

// onlineBBB lists the online BBB nodes, sorted by name: getMeetings'
// fan-out. Unlike snapshot it copies four strings of each, not the whole
// record: at 10,000 nodes a getMeetings call allocated 34 MB with
// snapshot's copies, 1 MB with this (BenchmarkGetMeetingsFleet).
func (r *registry) onlineBBB() []bbbNode {
	now := r.cfg.Clock()
	r.mu.RLock()
	out := make([]bbbNode, 0, len(r.byID))
	for _, e := range r.byID {
		if e.node.Role == fleet.RoleBBB && e.online(now, r.cfg.MissedReports) {
			out = append(out, bbbNode{ID: e.node.ID, Name: e.node.Name, URL: e.node.URL, Secret: e.node.Secret})
		}
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b bbbNode) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// size is how many nodes the registry holds.
func (r *registry) size() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byID)
}

// visit calls fn for every node, in no order, under the registry's read
// lock: online, reserved and reason as nodeView has them. fn copies what it
// needs of n (it must not keep n) and calls nothing of the registry's. A
// caller that wants a few fields of every node takes them this way, not
// from snapshot's full copies (5 MB at 10,000 nodes).
func (r *registry) visit(fn func(n *records.Node, online bool, reserved int, reason string)) {
	now := r.cfg.Clock()
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, e := range r.byID {
		fn(&e.node, e.online(now, r.cfg.MissedReports), int(e.reserved), r.healthReason(e, now))
	}
}

// snapshot lists the nodes, sorted by name.
func (r *registry) snapshot() []nodeView {
	now := r.cfg.Clock()
	r.mu.RLock()
	out := make([]nodeView, 0, len(r.byID))
	for _, e := range r.byID {
		out = append(out, r.viewOf(e, now))
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
