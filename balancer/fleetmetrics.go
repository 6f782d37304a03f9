package balancer

import (
	"bufio"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/bbb-agent/bbb-agent/balancer/placement"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// The fleet's metric families, which /metrics writes from a snapshot of the
// registry (metrics.ServeHTTP). The series of a family come sorted by
// label values (nodes by name), as client_golang's handler, which wrote
// them before, sorted them.

// metricsNode is what /metrics says of one node. A scrape copies this of
// every node under the registry's lock, 56 bytes a node (0.5 MB at 10,000
// nodes), not the node's whole nodeView (about 500: 5 MB a scrape). It is
// short-lived, but a collection that runs during the scrape counts it as
// live and sets the heap's next goal by it: the process keeps that much
// more memory until a collection without a scrape in it.
type metricsNode struct {
	Name string
	// Placement is the node's placement load (the policy's formula, its
	// reservations included).
	Placement  float64
	CPUPercent float64
	Load       metricsLoad // of its last report
	TURN       bool        // its role; BBB when false
	// State is the node's admin state as its index in metricsStates;
	// noState for one not there.
	State  uint8
	Online bool
	// Class is 0 for a healthy node, else 1 + the index in
	// fleet.HealthClasses of its reason's class (entry.reason).
	Class uint8
}

// metricsLoad is the part of a node's report that /metrics shows, but its
// CPU use. A node's figure that does not fit is shown as the largest that
// does.
type metricsLoad struct {
	Meetings, Participants, Voice, Video, Listeners int32
}

// metricsStates are the admin states in the order /metrics writes them.
var metricsStates = [...]fleet.AdminState{fleet.Cordoned, fleet.Disabled, fleet.Enabled}

// noState is metricsNode.State of a node whose state is none of
// metricsStates: it counts in no series.
const noState = uint8(len(metricsStates))

// newMetricsNode is /metrics' view of a node: online and reason as
// nodeView has them, reserved the meetings placed on it that no report
// reflects yet.
func newMetricsNode(n *records.Node, online bool, reserved int, reason string, p placement.Policy) metricsNode {
	l := &n.Load
	m := metricsNode{Name: n.Name, Placement: p.Load(*n, reserved), CPUPercent: l.CPUPercent,
		Load: metricsLoad{Meetings: clampInt32(l.Meetings), Participants: clampInt32(l.Participants),
			Voice: clampInt32(l.Voice), Video: clampInt32(l.Video), Listeners: clampInt32(l.Listeners)},
		TURN: n.Role == fleet.RoleTURN, State: noState, Online: online}
	if i := slices.Index(metricsStates[:], n.State); i >= 0 {
		m.State = uint8(i)
	}
	if reason != "" {
		i := slices.Index(fleet.HealthClasses, fleet.ReasonClass(reason))
		if i < 0 { // not listed: fleet's test keeps this from happening
			i = slices.Index(fleet.HealthClasses, fleet.OtherError)
		}
		m.Class = uint8(1 + i)
	}
	return m
}

// healthy says whether the node has no health problem.
func (m *metricsNode) healthy() bool { return m.Class == 0 }

// class is the node's health class, "" when healthy.
func (m *metricsNode) class() fleet.HealthClass {
	if m.Class == 0 {
		return ""
	}
	return fleet.HealthClasses[m.Class-1]
}

func clampInt32(v int) int32 {
	return int32(max(math.MinInt32, min(v, math.MaxInt32)))
}

// metricsNodes lists what /metrics says of the nodes, sorted by name.
func (r *registry) metricsNodes() []metricsNode {
	out := make([]metricsNode, 0, r.size())
	r.visit(func(n *records.Node, online bool, reserved int, reason string) {
		out = append(out, newMetricsNode(n, online, reserved, reason, r.cfg.Policy))
	})
	slices.SortFunc(out, func(a, b metricsNode) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// nodeGauge is a per-node family with the node label alone.
type nodeGauge struct {
	name, help string
	value      func(n *metricsNode) float64
}

var nodeGauges = []nodeGauge{
	{"bbb_balancer_node_cpu_percent", "CPU use reported by a node.",
		func(n *metricsNode) float64 { return n.CPUPercent }},
	{"bbb_balancer_node_listeners", "Listen-only participants reported by a node.",
		func(n *metricsNode) float64 { return float64(n.Load.Listeners) }},
	{"bbb_balancer_node_load", "Placement load of a node (the documented formula).",
		func(n *metricsNode) float64 { return n.Placement }},
	{"bbb_balancer_node_meetings", "Meetings reported by a node.",
		func(n *metricsNode) float64 { return float64(n.Load.Meetings) }},
	{"bbb_balancer_node_online", "1 while the node's reports are fresh.",
		func(n *metricsNode) float64 { return boolGauge(n.Online) }},
	{"bbb_balancer_node_participants", "Participants reported by a node.",
		func(n *metricsNode) float64 { return float64(n.Load.Participants) }},
	{"bbb_balancer_node_video_streams", "Video streams reported by a node.",
		func(n *metricsNode) float64 { return float64(n.Load.Video) }},
	{"bbb_balancer_node_voice_participants", "Participants in the voice conference (listen-only included) reported by a node.",
		func(n *metricsNode) float64 { return float64(n.Load.Voice) }},
}

const (
	helpNodeHealthy = "1 while a node is online and its BBB (or TURN server) answers; 0 with the reason's class: not_answering, hanging, tls_error, checksum_error, http_error, bad_answer, offline, turn_error or error (bbb-balancer status says the reason)."
	helpNodeState   = "Admin state of a node: 1 for the state it is in."
	helpNodes       = "Nodes by role, admin state and liveness."
)

// fleetTotals are the sums of the online nodes' last reports (an offline
// node's figures are stale and count nowhere).
var fleetTotals = []struct {
	name, help string
	value      func(metricsLoad) int32
}{
	{"bbb_balancer_listeners", "Listen-only participants on the online nodes.", func(l metricsLoad) int32 { return l.Listeners }},
	{"bbb_balancer_meetings", "Meetings on the online nodes.", func(l metricsLoad) int32 { return l.Meetings }},
	{"bbb_balancer_participants", "Participants on the online nodes.", func(l metricsLoad) int32 { return l.Participants }},
	{"bbb_balancer_video_streams", "Video streams on the online nodes.", func(l metricsLoad) int32 { return l.Video }},
	{"bbb_balancer_voice_participants", "Voice participants (listen-only included) on the online nodes.", func(l metricsLoad) int32 { return l.Voice }},
}

// writeFleetMetrics writes the fleet's families in the text format; nodes
// are sorted by name (registry.metricsNodes). A failed write shows in w's
// Flush.
func writeFleetMetrics(w *bufio.Writer, nodes []metricsNode) {
	var (
		totals = make([]int64, len(fleetTotals))
		line   []byte // one series' line, reused
	)
	// bbb_balancer_nodes has a series for every role, state and liveness,
	// zero or not; the array's order is the series' order.
	roles := [...]fleet.Role{fleet.RoleBBB, fleet.RoleTURN}
	livenesses := [...]fleet.Liveness{fleet.Offline, fleet.Online}
	var counts [len(livenesses)][len(roles)][len(metricsStates)]int
	for i := range nodes {
		n := &nodes[i]
		live := 0
		if n.Online {
			live = 1
			for t, total := range fleetTotals {
				totals[t] += int64(total.value(n.Load))
			}
		}
		role := 0
		if n.TURN {
			role = 1
		}
		if n.State != noState {
			counts[live][role][n.State]++
		}
	}
	for t, total := range fleetTotals {
		writeFamily(w, total.name, total.help)
		line = appendSample(line[:0], total.name, nil, float64(totals[t]))
		w.Write(line)
	}
	writeFamily(w, "bbb_balancer_nodes", helpNodes)
	for l, liveness := range livenesses {
		for r, role := range roles {
			for s, st := range metricsStates {
				line = appendSample(line[:0], "bbb_balancer_nodes",
					[]string{"liveness", string(liveness), "role", string(role), "state", string(st)}, float64(counts[l][r][s]))
				w.Write(line)
			}
		}
	}

	labels := []string{"node", ""}
	for _, g := range nodeGauges {
		writeFamily(w, g.name, g.help)
		for i := range nodes {
			n := &nodes[i]
			labels[1] = n.Name
			line = appendSample(line[:0], g.name, labels, g.value(n))
			w.Write(line)
		}
	}
	writeFamily(w, "bbb_balancer_node_healthy", helpNodeHealthy)
	labels = []string{"node", "", "reason", ""}
	for i := range nodes {
		n := &nodes[i]
		labels[1], labels[3] = n.Name, string(n.class())
		line = appendSample(line[:0], "bbb_balancer_node_healthy", labels, boolGauge(n.healthy()))
		w.Write(line)
	}
	writeFamily(w, "bbb_balancer_node_state", helpNodeState)
	labels = []string{"node", "", "state", ""}
	for i := range nodes {
		n := &nodes[i]
		labels[1] = n.Name
		for s, st := range metricsStates {
			labels[3] = string(st)
			line = appendSample(line[:0], "bbb_balancer_node_state", labels, boolGauge(int(n.State) == s))
			w.Write(line)
		}
	}
}

// writeFamily writes a gauge family's HELP and TYPE lines.
func writeFamily(w *bufio.Writer, name, help string) {
	w.WriteString("# HELP ")
	w.WriteString(name)
	w.WriteByte(' ')
	helpEscaper.WriteString(w, help)
	w.WriteString("\n# TYPE ")
	w.WriteString(name)
	w.WriteString(" gauge\n")
}

// appendSample appends one series' line: the name, the labels (name,
// value pairs, in order) and the value.
func appendSample(b []byte, name string, labels []string, v float64) []byte {
	b = append(b, name...)
	if len(labels) > 0 {
		b = append(b, '{')
		for i := 0; i < len(labels); i += 2 {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, labels[i]...)
			b = append(b, `="`...)
			b = appendLabelValue(b, labels[i+1])
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	switch {
	case math.IsNaN(v):
		b = append(b, "NaN"...)
	case math.IsInf(v, 1):
		b = append(b, "+Inf"...)
	case math.IsInf(v, -1):
		b = append(b, "-Inf"...)
	default:
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	return append(b, '\n')
}

// appendLabelValue appends a label value escaped as the text format wants:
// backslash, double quote and line feed.
func appendLabelValue(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '"':
			b = append(b, `\"`...)
		case '\n':
			b = append(b, `\n`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// helpEscaper escapes a HELP text as the text format wants.
var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
