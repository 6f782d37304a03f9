package balancer

import (
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
)

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNodeLoad, descNodeState, descNodeOnline, descNodeMeetings, descNodeParticipants, descNodeVideo, descNodeCPU} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, n := range c.nodes() {
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
}
