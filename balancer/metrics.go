package balancer

import (
	"cmp"

	"github.com/bbb-agent/bbb-agent/balancer/placement"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the balancer's Prometheus metrics, on a registry of its own.
type metrics struct {
	reg           *prometheus.Registry
	apiRequests   *prometheus.CounterVec
	apiLatency    *prometheus.HistogramVec
	placements    *prometheus.CounterVec
	reports       prometheus.Counter
	reportErrors  *prometheus.CounterVec
	flushLatency  prometheus.Histogram
	flushFailures prometheus.Counter
}

func newMetrics(nodes func() []nodeView, policy placement.Policy) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bbb_balancer_api_requests_total", Help: "BBB API requests by call and returncode (SUCCESS, FAILED, or redirect for join).",
		}, []string{"call", "result"}),
		apiLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bbb_balancer_api_request_duration_seconds", Help: "BBB API request latency by call.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"call"}),
		placements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bbb_balancer_placements_total", Help: "Placement decisions for create: new, existing (same node), moved (node offline or gone), over_ceiling, tag_fallback, failed.",
		}, []string{"result"}),
		reports: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bbb_balancer_reports_total", Help: "Agent load reports accepted.",
		}),
		reportErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bbb_balancer_report_errors_total", Help: "Agent API requests refused, by reason.",
		}, []string{"reason"}),
		flushLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "bbb_balancer_report_flush_duration_seconds", Help: "Time to write one batch of reports to the store.",
		}),
		flushFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bbb_balancer_report_flush_failures_total", Help: "Report batches the store refused (kept and retried).",
		}),
	}
	m.reg.MustRegister(m.apiRequests, m.apiLatency, m.placements, m.reports, m.reportErrors, m.flushLatency, m.flushFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&nodeCollector{nodes: nodes, policy: policy}, &healthCollector{nodes: nodes})
	return m
}

// nodeCollector reports per-node figures from the registry at scrape time.
type nodeCollector struct {
	nodes  func() []nodeView
	policy placement.Policy
}

var (
	descNodeLoad         = prometheus.NewDesc("bbb_balancer_node_load", "Placement load of a node (the documented formula).", []string{"node"}, nil)
	descNodeState        = prometheus.NewDesc("bbb_balancer_node_state", "Admin state of a node: 1 for the state it is in.", []string{"node", "state"}, nil)
	descNodeOnline       = prometheus.NewDesc("bbb_balancer_node_online", "1 while the node's reports are fresh.", []string{"node"}, nil)
	descNodeMeetings     = prometheus.NewDesc("bbb_balancer_node_meetings", "Meetings reported by a node.", []string{"node"}, nil)
	descNodeParticipants = prometheus.NewDesc("bbb_balancer_node_participants", "Participants reported by a node.", []string{"node"}, nil)
	descNodeVideo        = prometheus.NewDesc("bbb_balancer_node_video_streams", "Video streams reported by a node.", []string{"node"}, nil)
	descNodeCPU          = prometheus.NewDesc("bbb_balancer_node_cpu_percent", "CPU use reported by a node.", []string{"node"}, nil)
	descNodeVoice        = prometheus.NewDesc("bbb_balancer_node_voice_participants", "Participants in the voice conference (listen-only included) reported by a node.", []string{"node"}, nil)
	descNodeListeners    = prometheus.NewDesc("bbb_balancer_node_listeners", "Listen-only participants reported by a node.", []string{"node"}, nil)

	// Fleet totals: the sums of the online nodes' last reports (an offline
	// node's figures are stale and count nowhere).
	descMeetings     = prometheus.NewDesc("bbb_balancer_meetings", "Meetings on the online nodes.", nil, nil)
	descParticipants = prometheus.NewDesc("bbb_balancer_participants", "Participants on the online nodes.", nil, nil)
	descVoice        = prometheus.NewDesc("bbb_balancer_voice_participants", "Voice participants (listen-only included) on the online nodes.", nil, nil)
	descVideo        = prometheus.NewDesc("bbb_balancer_video_streams", "Video streams on the online nodes.", nil, nil)
	descListeners    = prometheus.NewDesc("bbb_balancer_listeners", "Listen-only participants on the online nodes.", nil, nil)
	descNodes        = prometheus.NewDesc("bbb_balancer_nodes", "Nodes by role, admin state and liveness.", []string{"role", "state", "liveness"}, nil)
)

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNodeLoad, descNodeState, descNodeOnline, descNodeMeetings, descNodeParticipants, descNodeVideo, descNodeCPU,
		descNodeVoice, descNodeListeners, descMeetings, descParticipants, descVoice, descVideo, descListeners, descNodes} {
		ch <- d
	}
}

// nodeCount is one bbb_balancer_nodes series.
type nodeCount struct {
	role     fleet.Role
	state    fleet.AdminState
	liveness fleet.Liveness
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	var total fleet.Load
	counts := map[nodeCount]int{}
	for _, role := range []fleet.Role{fleet.RoleBBB, fleet.RoleTURN} {
		for _, st := range []fleet.AdminState{fleet.Enabled, fleet.Cordoned, fleet.Disabled} {
			for _, l := range []fleet.Liveness{fleet.Online, fleet.Offline} {
				counts[nodeCount{role, st, l}] = 0
			}
		}
	}
	for _, n := range c.nodes() {
		liveness := fleet.Offline
		if n.Online {
			liveness = fleet.Online
			total.Meetings += n.Load.Meetings
			total.Participants += n.Load.Participants
			total.Voice += n.Load.Voice
			total.Video += n.Load.Video
			total.Listeners += n.Load.Listeners
		}
		counts[nodeCount{cmp.Or(n.Role, fleet.RoleBBB), n.State, liveness}]++
		ch <- prometheus.MustNewConstMetric(descNodeVoice, prometheus.GaugeValue, float64(n.Load.Voice), n.Name)
		ch <- prometheus.MustNewConstMetric(descNodeListeners, prometheus.GaugeValue, float64(n.Load.Listeners), n.Name)
		ch <- prometheus.MustNewConstMetric(descNodeLoad, prometheus.GaugeValue, c.policy.Load(n.Node, n.Reserved), n.Name)
		for _, st := range []fleet.AdminState{fleet.Enabled, fleet.Cordoned, fleet.Disabled} {
			v := 0.0
			if n.State == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descNodeState, prometheus.GaugeValue, v, n.Name, string(st))
		}
		online := 0.0
		if n.Online {
			online = 1
		}
		ch <- prometheus.MustNewConstMetric(descNodeOnline, prometheus.GaugeValue, online, n.Name)
		ch <- prometheus.MustNewConstMetric(descNodeMeetings, prometheus.GaugeValue, float64(n.Load.Meetings), n.Name)
		ch <- prometheus.MustNewConstMetric(descNodeParticipants, prometheus.GaugeValue, float64(n.Load.Participants), n.Name)
		ch <- prometheus.MustNewConstMetric(descNodeVideo, prometheus.GaugeValue, float64(n.Load.Video), n.Name)
		ch <- prometheus.MustNewConstMetric(descNodeCPU, prometheus.GaugeValue, n.Load.CPUPercent, n.Name)
	}
	for _, t := range []struct {
		d *prometheus.Desc
		v int
	}{{descMeetings, total.Meetings}, {descParticipants, total.Participants}, {descVoice, total.Voice}, {descVideo, total.Video}, {descListeners, total.Listeners}} {
		ch <- prometheus.MustNewConstMetric(t.d, prometheus.GaugeValue, float64(t.v))
	}
	for k, v := range counts {
		ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(v), string(k.role), string(k.state), string(k.liveness))
	}
}
