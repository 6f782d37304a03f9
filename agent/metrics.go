package agent

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MetricsHandler serves the agent's Prometheus metrics, read from its status
// at scrape time.
func (a *Agent) MetricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&statusCollector{a: a}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}

type statusCollector struct{ a *Agent }

var (
	descState      = prometheus.NewDesc("bbb_agent_state", "Lifecycle state: 1 for the state the agent is in.", []string{"state"}, nil)
	descRegistered = prometheus.NewDesc("bbb_agent_registered", "1 while the node is registered with its balancer.", nil, nil)
	descReportAge  = prometheus.NewDesc("bbb_agent_last_report_age_seconds", "Seconds since the last report the balancer accepted.", nil, nil)
	descBBB        = prometheus.NewDesc("bbb_agent_bbb_healthy", "1 while the node's BBB API answers.", nil, nil)
	descMeetings   = prometheus.NewDesc("bbb_agent_meetings", "Meetings on the node.", nil, nil)
	descUsers      = prometheus.NewDesc("bbb_agent_participants", "Participants on the node.", nil, nil)
	descVideo      = prometheus.NewDesc("bbb_agent_video_streams", "Video streams on the node.", nil, nil)
	descDrainLeft  = prometheus.NewDesc("bbb_agent_drain_meetings_left", "Meetings a drain still waits for (0 when not draining).", nil, nil)

	descRecShipped = prometheus.NewDesc("bbb_agent_recordings_shipped_total", "Recording formats the storage confirmed since the agent started.", nil, nil)
	descRecFailed  = prometheus.NewDesc("bbb_agent_recordings_failed_total", "Failed attempts to ship or index a recording format since the agent started.", nil, nil)
	descRecBytes   = prometheus.NewDesc("bbb_agent_recordings_bytes_shipped_total", "Bytes of recordings the storage confirmed since the agent started.", nil, nil)
	descRecBacklog = prometheus.NewDesc("bbb_agent_recordings_backlog", "Recordings not yet where they belong, by state (processing: BBB has not published them yet).", []string{"state"}, nil)
)

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descRegistered, descReportAge, descBBB, descMeetings, descUsers, descVideo, descDrainLeft,
		descRecShipped, descRecFailed, descRecBytes, descRecBacklog} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.a.Status()
	for _, s := range []State{Starting, Registering, Ready, Draining, Drained, Stopped} {
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, b2f(st.State == s), string(s))
	}
	ch <- prometheus.MustNewConstMetric(descRegistered, prometheus.GaugeValue, b2f(st.Registered))
	if st.LastReportAgeSeconds != nil {
		ch <- prometheus.MustNewConstMetric(descReportAge, prometheus.GaugeValue, *st.LastReportAgeSeconds)
	}
	ch <- prometheus.MustNewConstMetric(descBBB, prometheus.GaugeValue, b2f(st.BBBHealthy))
	ch <- prometheus.MustNewConstMetric(descMeetings, prometheus.GaugeValue, float64(st.Load.Meetings))
	ch <- prometheus.MustNewConstMetric(descUsers, prometheus.GaugeValue, float64(st.Load.Participants))
	ch <- prometheus.MustNewConstMetric(descVideo, prometheus.GaugeValue, float64(st.Load.Video))
	left := 0.0
	if st.Drain != nil {
		left = float64(st.Drain.MeetingsLeft)
	}
	ch <- prometheus.MustNewConstMetric(descDrainLeft, prometheus.GaugeValue, left)
	if r := c.a.deps.Recordings; r != nil {
		// The counters live, the backlog as the last report cycle read it.
		rs := r.Stats()
		ch <- prometheus.MustNewConstMetric(descRecShipped, prometheus.CounterValue, float64(rs.Shipped))
		ch <- prometheus.MustNewConstMetric(descRecFailed, prometheus.CounterValue, float64(rs.Failed))
		ch <- prometheus.MustNewConstMetric(descRecBytes, prometheus.CounterValue, float64(rs.BytesShipped))
		if st.Recordings != nil {
			b := st.Recordings.Backlog
			for state, n := range map[string]int{"processing": b.Processing, "queued": b.Queued, "shipping": b.Shipping,
				"unindexed": b.Unindexed, "failed": b.Failed, "quarantined": b.Quarantined} {
				ch <- prometheus.MustNewConstMetric(descRecBacklog, prometheus.GaugeValue, float64(n), state)
			}
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
