package placement

import (
	"errors"
	"slices"

	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// Errors Pick returns.
var (
	// ErrNoNode: no eligible node (role bbb, enabled, online, and untagged
	// or matching an optional tag request).
	ErrNoNode = errors.New("placement: no available node")
	// ErrTagUnavailable: a required tag request (trailing "!") matched no
	// eligible node. The BBB API front answers messageKey
	// serverTagUnavailable.
	ErrTagUnavailable = errors.New("placement: no available node with the required server tag")
)

// Candidate is one node as the caller sees it at the moment of the create.
type Candidate struct {
	Node records.Node
	// Online is the node's liveness (records.Node.Liveness), computed by the
	// caller so that placement reads no clock.
	Online bool
	// Reserved counts the meetings placed on the node since the report its
	// Load comes from. The caller resets it when a new report arrives.
	// Negative counts as 0.
	Reserved int
}

// Policy holds the weights of the load formula (see the package doc) and the
// CPU ceiling. Build one with DefaultPolicy and change what differs.
type Policy struct {
	// ParticipantWeight is Wp, per participant (participantCount: everyone
	// in a meeting, moderators and listeners included).
	ParticipantWeight float64
	// VideoWeight is Wv, per webcam stream.
	VideoWeight float64
	// VoiceWeight is Wa, per participant in the voice conference.
	VoiceWeight float64
	// MeetingWeight is Wm, per running meeting.
	MeetingWeight float64
	// CPUWeight is Wc, per percent of CPU (0..100, all cores together).
	CPUWeight float64
	// ExpectedParticipants is E, the size of a typical new meeting; a
	// reservation weighs MeetingWeight + ParticipantWeight × E.
	ExpectedParticipants float64
	// CPUCeiling is the CPU percent above which a node takes no new meeting
	// while an eligible node at or under it exists. 0 or less: no ceiling.
	CPUCeiling float64
}

// DefaultPolicy returns the default weights. Their scale is "one
// participant": a load of 100 is about what 100 plain participants cost.
//
//   - Participant 1: the unit. Every participant costs bbb-web, HTML5 and
//     WebRTC signalling work and bandwidth for the shared slides and chat.
//   - Video 2: a webcam stream is the expensive part of a BBB node; the
//     media server receives it and sends it on to every viewer, so one
//     stream costs more than the participant sending it.
//   - Voice 0.5: a voice participant adds an audio leg that FreeSWITCH
//     decodes and mixes; cheaper than video, dearer than listening only.
//   - Meeting 1: the fixed cost of a meeting (its conference in FreeSWITCH,
//     its state in akka-apps, its recording events), about one participant.
//   - CPU 1 per percent: CPU catches what the counts miss (screen sharing,
//     recording processing, a noisy neighbour). A typical node is full at a
//     few hundred participants, so one percent is worth two or three of
//     them; weighing it as one keeps CPU a second opinion, since the sample
//     is noisy and partly counts the same users again.
//   - Expected participants 10: a reservation weighs 11, like a small class
//     or a team meeting, the usual size of a new meeting. Too small and a
//     burst piles onto the emptiest node; too large and a node with fresh
//     placements looks fuller than it is until its next report, which only
//     spreads a burst wider. BenchmarkBurstyDay shows no clear difference
//     between 5 and 30.
//   - CPU ceiling 85: a media server near full CPU drops audio and freezes
//     video; 85 leaves headroom for the meetings already there to grow.
func DefaultPolicy() Policy {
	return Policy{
		ParticipantWeight:    1,
		VideoWeight:          2,
		VoiceWeight:          0.5,
		MeetingWeight:        1,
		CPUWeight:            1,
		ExpectedParticipants: 10,
		CPUCeiling:           85,
	}
}

// Load is the node's load by the formula of the package doc, with reserved
// meetings placed since its last report.
func (p Policy) Load(n records.Node, reserved int) float64 {
	return p.load(&n, reserved)
}

func (p Policy) load(n *records.Node, reserved int) float64 {
	l := &n.Load
	v := p.ParticipantWeight*float64(l.Participants) +
		p.VideoWeight*float64(l.Video) +
		p.VoiceWeight*float64(l.Voice) +
		p.MeetingWeight*float64(l.Meetings) +
		p.CPUWeight*l.CPUPercent +
		float64(max(reserved, 0))*(p.MeetingWeight+p.ParticipantWeight*p.ExpectedParticipants)
	if m := n.LoadMultiplier; m > 0 {
		v *= m
	}
	return v
}

// Decision is where a new meeting goes, and why.
type Decision struct {
	Node records.Node
	// Load is the node's load at the decision, its reservations included.
	Load float64
	// OverCeiling: the node's CPU is above Policy.CPUCeiling; so was every
	// node the request could go to, apart from nodes not reporting a healthy
	// BBB.
	OverCeiling bool
	// Unhealthy: the node did not report a healthy BBB; no node the request
	// could go to did.
	Unhealthy bool
	// Fallback: an optional tag request went to an untagged node because no
	// node with a requested tag was available (or all of those were
	// unhealthy or over the ceiling while an untagged node was not).
	Fallback bool
}

// rank orders candidates; lower is better. The fields compare in order.
type rank struct {
	unhealthy, over, fallback bool
	load                      float64
	reserved                  int
	name, id                  string
}

func (a *rank) less(b *rank) bool {
	switch {
	case a.unhealthy != b.unhealthy:
		return !a.unhealthy
	case a.over != b.over:
		return !a.over
	case a.fallback != b.fallback:
		return !a.fallback
	case a.load != b.load:
		return a.load < b.load
	case a.reserved != b.reserved:
		return a.reserved < b.reserved
	case a.name != b.name:
		return a.name < b.name
	}
	return a.id < b.id
}

// Pick chooses the node for a new meeting among cands for the server tag
// request req. It returns ErrTagUnavailable for a required request that no
// eligible node matches, and ErrNoNode when nothing else is eligible.
//
// Pick makes one pass over cands and allocates nothing; it does not modify
// cands. The caller records the placement by incrementing the chosen
// candidate's Reserved until the node's next report.
func (p Policy) Pick(cands []Candidate, req TagRequest) (Decision, error) {
	k := p.Picker(req)
	for i := range cands {
		k.Add(&cands[i].Node, cands[i].Online, cands[i].Reserved)
	}
	return k.Decision()
}

// Picker is Pick one candidate at a time, each read in place: a caller
// holding thousands of nodes copies none of them for a create. Add every
// candidate, then call Decision (which copies the chosen node) while the
// added nodes are still unchanged.
type Picker struct {
	p          Policy
	req        TagRequest
	noneListed bool
	best       *records.Node
	br         rank
}

// Picker starts a placement for req.
func (p Policy) Picker(req TagRequest) Picker {
	return Picker{p: p, req: req, noneListed: slices.Contains(req.Tags, NoneTag)}
}

// Add considers a node; online and reserved are a Candidate's Online and
// Reserved.
func (k *Picker) Add(n *records.Node, online bool, reserved int) {
	if n.Role != fleet.RoleBBB || n.State != fleet.Enabled || !online {
		return
	}
	fallback := false
	switch {
	case len(k.req.Tags) == 0:
		if tagged(n.Tags) {
			return
		}
	case !matches(n.Tags, k.req.Tags, k.noneListed):
		if k.req.Required || tagged(n.Tags) {
			return
		}
		fallback = true
	}
	r := rank{
		unhealthy: !n.Load.BBBHealthy,
		over:      k.p.CPUCeiling > 0 && n.Load.CPUPercent > k.p.CPUCeiling,
		fallback:  fallback,
		load:      k.p.load(n, reserved),
		reserved:  max(reserved, 0),
		name:      n.Name,
		id:        n.ID,
	}
	if k.best == nil || r.less(&k.br) {
		k.best, k.br = n, r
	}
}

// Decision is the placement among the nodes added.
func (k *Picker) Decision() (Decision, error) {
	if k.best == nil {
		if k.req.Required && len(k.req.Tags) > 0 {
			return Decision{}, ErrTagUnavailable
		}
		return Decision{}, ErrNoNode
	}
	return Decision{
		Node:        *k.best,
		Load:        k.br.load,
		OverCeiling: k.br.over,
		Unhealthy:   k.br.unhealthy,
		Fallback:    k.br.fallback,
	}, nil
}
