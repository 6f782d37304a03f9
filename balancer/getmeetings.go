package balancer

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/bbb-agent/bbb-agent/bbb"
)

// fleetMeetings serves getMeetings from each node's answer kept for at most
// Config.GetMeetingsMaxAge (default DefaultGetMeetingsMaxAge, 1 s):
//
//   - concurrent calls that find a node's answer missing or too old share one
//     request to that node (singleflight);
//   - a create or end this replica forwards to a node drops that node's kept
//     answer, so the change is visible to the next getMeetings at once (a
//     create or end through another replica is visible within the bound);
//   - the nodes asked are the online BBB nodes of the registry at each call,
//     so a node going offline drops out at once; a node that does not answer
//     is left out (for the bound) and never fails the call;
//   - each node's meetings are encoded once, when its answer comes, and
//     kept encoded (not parsed: about 900 bytes a meeting); an answer is
//     the kept parts one after the other (also kept whole up to
//     maxAssembled), so a part's change costs its own encoding, not the
//     fleet's.
//
// getMeetingInfo and isMeetingRunning stay live: they are forwarded to the
// meeting's node on every call.
type fleetMeetings struct {
	group singleflight.Group

	mu    sync.Mutex
	nodes map[string]*nodeAnswer
	// gens counts the drops of each node's answer: a request started before a
	// drop neither serves the calls after it nor is kept.
	gens map[string]uint64
	// last is the assembled answer and the parts it was built from: every
	// call whose parts are the same is served these bytes as they are.
	last *keptAnswer

	// build lets one caller at a time assemble an answer: the callers that
	// wait behind it find it built.
	build sync.Mutex
}

// maxAssembled is the largest getMeetings answer also kept whole, to be
// written in one piece: a larger one (tens of thousands of meetings) is
// written from its parts through a buffer of streamBuffer bytes.
const (
	maxAssembled = 4 << 20
	streamBuffer = 64 << 10
)

// noMeetingsAnswer is getMeetings' answer when no node runs a meeting, as
// BBB answers: an empty <meetings/> and noMeetings.
var noMeetingsAnswer = func() []byte {
	b, err := bbb.MarshalResponse(bbb.GetMeetingsResponse{ReturnCode: bbb.ReturnSuccess,
		MessageKey: bbb.KeyNoMeetings, Message: "no meetings were found on this server"})
	if err != nil {
		panic(err) // a fixed answer
	}
	return b
}()

// streamBuffers are the buffers of the answers written from their parts.
var streamBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, streamBuffer) }}

// keptAnswer is a getMeetings answer: the parts it is written from.
type keptAnswer struct {
	parts []*nodeAnswer
	// size is the answer's length in bytes; body is the whole answer when
	// it is at most maxAssembled bytes (always when no part has a meeting:
	// BBB's empty answer).
	size int
	body []byte
	// While another caller builds the next answer, this one still serves
	// the calls for the same nodes with no drop since (gens) as long as its
	// oldest part is within the bound.
	nodeIDs []string
	gens    []uint64
	oldest  time.Time
}

// servesFor says whether k may answer a call for these nodes and their
// current generations at now.
func (k *keptAnswer) servesFor(ids []string, gens []uint64, now time.Time, maxAge time.Duration) bool {
	return k != nil && slices.Equal(k.nodeIDs, ids) && slices.Equal(k.gens, gens) &&
		now.Sub(k.oldest) < maxAge && !now.Before(k.oldest)
}

// nodeAnswer is one node's getMeetings answer at a time: its meetings'
// elements (bbb.AppendMeetings); failed means the node did not answer, or
// its answer could not be encoded (it is left out).
type nodeAnswer struct {
	xml    []byte
	at     time.Time
	failed bool
}

// writeTo writes the answer to w.
func (k *keptAnswer) writeTo(w io.Writer) error {
	if k.body != nil {
		_, err := w.Write(k.body)
		return err
	}
	// In pieces of streamBuffer: a write each for thousands of parts
	// would be a system call each.
	b := streamBuffers.Get().(*bufio.Writer)
	b.Reset(w)
	defer func() {
		b.Reset(nil)
		streamBuffers.Put(b)
	}()
	if err := k.appendTo(b); err != nil {
		return err
	}
	return b.Flush()
}

// appendTo writes the answer with meetings from its parts.
func (k *keptAnswer) appendTo(w io.Writer) error {
	if _, err := io.WriteString(w, bbb.GetMeetingsHead); err != nil {
		return err
	}
	for _, a := range k.parts {
		if _, err := w.Write(a.xml); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, bbb.GetMeetingsTail)
	return err
}

// drop forgets a node's kept answer after a create or end on it.
func (f *fleetMeetings) drop(nodeID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gens == nil {
		f.gens = map[string]uint64{}
	}
	f.gens[nodeID]++
	delete(f.nodes, nodeID)
}

// part returns the node's kept answer if younger than maxAge, the node's
// generation, and whether the answer is past half its bound (time to ask
// the node again in the background, so that callers rarely wait).
func (f *fleetMeetings) part(nodeID string, now time.Time, maxAge time.Duration) (*nodeAnswer, uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.nodes[nodeID]
	if a != nil && now.Sub(a.at) < maxAge && !now.Before(a.at) {
		return a, f.gens[nodeID], now.Sub(a.at) >= maxAge/2
	}
	return nil, f.gens[nodeID], false
}

func (f *fleetMeetings) keep(nodeID string, gen uint64, a *nodeAnswer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gens[nodeID] != gen {
		return
	}
	if f.nodes == nil {
		f.nodes = map[string]*nodeAnswer{}
	}
	f.nodes[nodeID] = a
}

// fleetMeetingsAnswer returns getMeetings' answer for the nodes, made once
// per change of a node's part (each part encoded once, when it comes), not
// per call.
func (s *Server) fleetMeetingsAnswer(ctx context.Context, nodes []bbbNode) *keptAnswer {
	f := &s.fleetMeetings
	maxAge := s.cfg.GetMeetingsMaxAge
	parts := make([]*nodeAnswer, len(nodes))
	ids := make([]string, len(nodes))
	gens := make([]uint64, len(nodes))
	// ask asks node i, once for all the calls that want its part of this
	// generation: shared by every waiting call, so no one caller's cancel
	// ends it. Made only for the nodes asked: a call that every kept part
	// serves allocates nothing per node.
	ask := func(i int) (key string, do func() (any, error)) {
		n, gen := nodes[i], gens[i]
		return n.ID + "/" + strconv.FormatUint(gen, 10), func() (any, error) {
			at := s.cfg.Clock()
			ms, err := s.nodeMeetings(context.WithoutCancel(ctx), n.record(), s.cfg.GetMeetingsTimeout)
			var enc []byte
			if err == nil {
				// Kept at its length, not the encoder's grown buffer.
				if enc, err = bbb.AppendMeetings(nil, ms); len(enc) > 0 {
					enc = bytes.Clone(enc)
				}
			}
			a := &nodeAnswer{xml: enc, at: at, failed: err != nil}
			if err != nil {
				s.log.Warn("getMeetings: leaving a node out", "node", n.Name, "err", err)
			}
			f.keep(n.ID, gen, a)
			return a, nil
		}
	}
	now := s.cfg.Clock()
	var wg sync.WaitGroup
	for i, n := range nodes {
		a, gen, ageing := f.part(n.ID, now, maxAge)
		ids[i], gens[i] = n.ID, gen
		if a != nil {
			parts[i] = a
			if ageing {
				f.group.DoChan(ask(i)) // renewed in the background
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, _, _ := f.group.Do(ask(i))
			parts[i] = v.(*nodeAnswer)
		}()
	}
	wg.Wait()
	if k := f.kept(parts); k != nil {
		return k
	}
	if !f.build.TryLock() {
		// Another caller builds: its predecessor may still serve.
		f.mu.Lock()
		last := f.last
		f.mu.Unlock()
		if last.servesFor(ids, gens, s.cfg.Clock(), maxAge) {
			return last
		}
		f.build.Lock()
	}
	defer f.build.Unlock()
	if k := f.kept(parts); k != nil { // built by the caller before
		return k
	}
	k := &keptAnswer{parts: parts, nodeIDs: ids, gens: gens}
	for i, a := range parts {
		if i == 0 || a.at.Before(k.oldest) {
			k.oldest = a.at
		}
		k.size += len(a.xml)
	}
	switch {
	case k.size == 0:
		k.body, k.size = noMeetingsAnswer, len(noMeetingsAnswer)
	default:
		k.size += len(bbb.GetMeetingsHead) + len(bbb.GetMeetingsTail)
		if k.size <= maxAssembled {
			b := bytes.NewBuffer(make([]byte, 0, k.size))
			_ = k.appendTo(b) // a bytes.Buffer does not fail
			k.body = b.Bytes()
		}
	}
	f.mu.Lock()
	f.last = k
	f.mu.Unlock()
	return k
}

// expire forgets the kept answers past the bound (Run, at each refresh):
// they serve no call, and a fleet's are large (at 100,000 meetings, about
// 90 MB of encoded meetings), so one getMeetings must not hold them for the
// rest of the replica's life. With a negative bound
// (every call asks every node) none is ever of use.
func (f *fleetMeetings) expire(now time.Time, maxAge time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, a := range f.nodes {
		if now.Sub(a.at) >= maxAge {
			delete(f.nodes, id)
		}
	}
	// An answer whose oldest part is past the bound serves no call
	// (servesFor), and no call gets that part again (part).
	if f.last != nil && now.Sub(f.last.oldest) >= maxAge {
		f.last = nil
	}
}

// kept returns the assembled answer if it was built from these parts.
func (f *fleetMeetings) kept(parts []*nodeAnswer) *keptAnswer {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.last != nil && slices.Equal(f.last.parts, parts) {
		return f.last
	}
	return nil
}
