package balancer

import (
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/prometheus/client_golang/prometheus"
)

// healthCollector reports every node's health at scrape time: 1 healthy, 0
// not, with the reason's class (fleet.HealthClass, a bounded set) as a
// label; the reason's text is in status and the log only.
type healthCollector struct {
	nodes func() []nodeView
}

var descNodeHealthy = prometheus.NewDesc("bbb_balancer_node_healthy",
	"1 while a node is online and its BBB (or TURN server) answers; 0 with the reason's class: not_answering, hanging, tls_error, checksum_error, http_error, bad_answer, offline, turn_error or error (bbb-balancer status says the reason).",
	[]string{"node", "reason"}, nil)

func (c *healthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descNodeHealthy }

func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	for _, n := range c.nodes() {
		v := 0.0
		if n.Reason == "" {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descNodeHealthy, prometheus.GaugeValue, v, n.Name, string(fleet.ReasonClass(n.Reason)))
	}
}
