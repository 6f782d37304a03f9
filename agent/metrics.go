package agent

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MetricsHandler serves the agent's Prometheus metrics, read from its status
// at scrape time.
func (a *Agent) MetricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&statusCollector{a: a}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if a.deps.BBB != nil {
		reg.MustRegister(newExporterCollector(a))
	}
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

// The exporter-compatible series carry bigbluebutton-exporter's names, labels
// and meaning (its documentation, v0.7), computed from the report cycle's own
// getMeetings, so that the exporter's Grafana dashboards work against a
// bbb-agent target unchanged. Each also carries a node label: the exporter's
// dashboards select by job and instance, aggregate, or show chosen columns,
// so no panel is disturbed by it.

// apiLatencyBuckets are the exporter's bbb_api_latency bounds, in seconds.
var apiLatencyBuckets = [...]float64{.01, .025, .05, .075, .1, .25, .5, .75, 1, 1.25, 1.5, 1.75, 2, 2.5, 5, 7.5, 10}

// The exporter's bbb_room_* bounds: people per room, and voice or video per
// room.
var (
	roomPeopleBounds = []float64{0, 1, 5, 15, 30, 60, 90, 120, 150, 200, 250, 300, 400, 500}
	roomMediaBounds  = []float64{0, 1, 5, 15, 30, 60, 90, 120}
)

// The exporter's client types, present with 0 when nobody uses them.
var clientTypes = []string{"html5", "dial-in"}

// bbbPolls keeps what the exporter-compatible series need from the report
// cycle's getMeetings: figures, not the meetings. The zero value is ready.
type bbbPolls struct {
	mu sync.Mutex
	bbbPollsView
	// The internal IDs of the last answer's meetings and breakout rooms:
	// the unique counters count the ones not seen in the answer before.
	seenMeetings, seenBreakouts map[string]bool
}

// bbbPollsView is what a scrape reads.
type bbbPollsView struct {
	polled  bool // a getMeetings finished, answered or not
	up      bool // the last one answered
	figures meetingFigures
	latency latencyHistogram
	// uniqueMeetings and uniqueBreakouts count meetings and breakout rooms
	// since the agent started.
	uniqueMeetings, uniqueBreakouts uint64
}

// latencyHistogram counts getMeetings durations into apiLatencyBuckets.
type latencyHistogram struct {
	cumulative [len(apiLatencyBuckets)]uint64
	count      uint64
	sum        float64
}

func (h *latencyHistogram) observe(seconds float64) {
	for i, b := range apiLatencyBuckets {
		if seconds <= b {
			h.cumulative[i]++
		}
	}
	h.count++
	h.sum += seconds
}

func (h *latencyHistogram) buckets() map[float64]uint64 {
	out := make(map[float64]uint64, len(apiLatencyBuckets))
	for i, b := range apiLatencyBuckets {
		out[b] = h.cumulative[i]
	}
	return out
}

// meetingFigures are the exporter's figures of one getMeetings answer. Like
// the exporter they count every meeting BBB lists, breakout rooms and
// meetings that ended but are still listed included; the bbb_agent_* series
// and the load report count running non-breakout meetings instead.
type meetingFigures struct {
	meetings, participants, participantsMax, listeners, voice, video int
	clients                                                          map[string]int // by lower-case clientType
	origins                                                          map[origin]int // participants by origin metadata
	// rooms are the per-meeting distributions: participants, listeners,
	// voice participants, video streams.
	rooms [4]roomHistogram
}

// origin is a meeting's bbb-origin-server-name and bbb-origin metadata,
// lower case.
type origin struct{ server, name string }

// roomHistogram counts meetings by a per-meeting figure.
type roomHistogram struct {
	bounds     []float64
	cumulative []uint64
	count      uint64
	sum        float64
}

func newRoomHistogram(bounds []float64) roomHistogram {
	return roomHistogram{bounds: bounds, cumulative: make([]uint64, len(bounds))}
}

func (h *roomHistogram) observe(v int) {
	for i, b := range h.bounds {
		if float64(v) <= b {
			h.cumulative[i]++
		}
	}
	h.count++
	h.sum += float64(v)
}

func countFigures(meetings []bbb.Meeting) meetingFigures {
	f := meetingFigures{clients: map[string]int{}, origins: map[origin]int{},
		rooms: [4]roomHistogram{newRoomHistogram(roomPeopleBounds), newRoomHistogram(roomPeopleBounds),
			newRoomHistogram(roomMediaBounds), newRoomHistogram(roomMediaBounds)}}
	for _, t := range clientTypes {
		f.clients[t] = 0
	}
	for i := range meetings {
		m := &meetings[i]
		f.meetings++
		f.participants += m.ParticipantCount
		f.participantsMax = max(f.participantsMax, m.ParticipantCount)
		f.listeners += m.ListenerCount
		f.voice += m.VoiceParticipantCount
		f.video += m.VideoCount
		for _, a := range m.Attendees {
			f.clients[strings.ToLower(a.ClientType)]++
		}
		if m.ParticipantCount > 0 {
			server, _ := m.Metadata.Get("bbb-origin-server-name")
			name, _ := m.Metadata.Get("bbb-origin")
			f.origins[origin{strings.ToLower(server), strings.ToLower(name)}] += m.ParticipantCount
		}
		for j, v := range []int{m.ParticipantCount, m.ListenerCount, m.VoiceParticipantCount, m.VideoCount} {
			f.rooms[j].observe(v)
		}
	}
	return f
}

// record takes one getMeetings of the report cycle: its answer (err nil) or
// failure, and how long it took.
func (p *bbbPolls) record(meetings []bbb.Meeting, err error, took time.Duration) {
	var f meetingFigures
	if err == nil {
		f = countFigures(meetings)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.polled, p.up = true, err == nil
	p.latency.observe(took.Seconds())
	if err != nil {
		return // the unique counters go on from the last answer
	}
	p.figures = f
	seenMeetings, seenBreakouts := make(map[string]bool), make(map[string]bool)
	for i := range meetings {
		id := meetings[i].InternalMeetingID
		if meetings[i].IsBreakout {
			seenBreakouts[id] = true
			if !p.seenBreakouts[id] {
				p.uniqueBreakouts++
			}
		} else {
			seenMeetings[id] = true
			if !p.seenMeetings[id] {
				p.uniqueMeetings++
			}
		}
	}
	p.seenMeetings, p.seenBreakouts = seenMeetings, seenBreakouts
}

func (p *bbbPolls) view() bbbPollsView {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bbbPollsView // the figures' maps are never written after countFigures
}

// exporterCollector serves the exporter-compatible series.
type exporterCollector struct {
	a                                              *Agent
	exporter, version, up, latency                 *prometheus.Desc
	meetings, participants, participantsMax        *prometheus.Desc
	listeners, voice, video, clients, origins      *prometheus.Desc
	uniqueMeetings, uniqueBreakouts, recProcessing *prometheus.Desc
	roomBucket, roomCount, roomSum                 [4]*prometheus.Desc
}

// roomSeries are the names of the bbb_room_* gauge histograms, in the order
// of meetingFigures.rooms.
var roomSeries = [4]string{"bbb_room_participants", "bbb_room_listeners", "bbb_room_voice_participants", "bbb_room_video_participants"}

func newExporterCollector(a *Agent) *exporterCollector {
	node := prometheus.Labels{"node": a.cfg.Node}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, node)
	}
	c := &exporterCollector{a: a,
		exporter:        d("bbb_exporter", "Exporter information: 1, with the version of bbb-agent that serves the series.", "version"),
		version:         d("bbb_version", "BigBlueButton version, as the node's API root says: 1, with the version.", "version"),
		up:              d("bbb_api_up", "1 if the node's BigBlueButton API answered the agent's last getMeetings, 0 otherwise."),
		latency:         d("bbb_api_latency", "BigBlueButton API call latency, in seconds.", "endpoint", "parameters"),
		meetings:        d("bbb_meetings", "Meetings BigBlueButton lists, breakout rooms included."),
		participants:    d("bbb_meetings_participants", "Total number of participants in all BigBlueButton meetings."),
		participantsMax: d("bbb_meetings_participants_max", "Participants of the largest BigBlueButton meeting."),
		listeners:       d("bbb_meetings_listeners", "Total number of listen-only participants in all BigBlueButton meetings."),
		voice:           d("bbb_meetings_voice_participants", "Total number of voice participants in all BigBlueButton meetings."),
		video:           d("bbb_meetings_video_participants", "Total number of video streams in all BigBlueButton meetings."),
		clients:         d("bbb_meetings_participant_clients", "Participants in all BigBlueButton meetings by client type.", "type"),
		origins:         d("bbb_meetings_participants_origin", "Participants in all BigBlueButton meetings by bbb-origin-server-name and bbb-origin metadata.", "server", "name"),
		uniqueMeetings:  d("bbb_unique_meetings_total", "Distinct non-breakout meetings seen since the agent started."),
		uniqueBreakouts: d("bbb_unique_breakout_rooms_total", "Distinct breakout rooms seen since the agent started."),
		recProcessing:   d("bbb_recordings_processing", "Recordings BigBlueButton is still processing on the node."),
	}
	for i, name := range roomSeries {
		c.roomBucket[i] = d(name+"_bucket", "Meetings with at most le of the figure (gauge histogram).", "le")
		c.roomCount[i] = d(name+"_gcount", "Meetings counted in the gauge histogram.")
		c.roomSum[i] = d(name+"_gsum", "Sum of the figure over all meetings.")
	}
	return c
}

func (c *exporterCollector) descs() []*prometheus.Desc {
	out := []*prometheus.Desc{c.exporter, c.version, c.up, c.latency, c.meetings, c.participants, c.participantsMax,
		c.listeners, c.voice, c.video, c.clients, c.origins, c.uniqueMeetings, c.uniqueBreakouts, c.recProcessing}
	out = append(out, c.roomBucket[:]...)
	out = append(out, c.roomCount[:]...)
	return append(out, c.roomSum[:]...)
}

func (c *exporterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

func (c *exporterCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st := c.a.Status()
	p := c.a.bbbPolls.view()
	gauge(c.exporter, 1, Version)
	gauge(c.up, b2f(p.up))
	if st.Load.BBBVersion != "" {
		gauge(c.version, 1, st.Load.BBBVersion)
	}
	if rs := st.Recordings; rs != nil && rs.Error == "" {
		gauge(c.recProcessing, float64(rs.Backlog.Processing))
	}
	if !p.polled {
		return
	}
	ch <- prometheus.MustNewConstHistogram(c.latency, p.latency.count, p.latency.sum, p.latency.buckets(), "getMeetings", "")
	ch <- prometheus.MustNewConstMetric(c.uniqueMeetings, prometheus.CounterValue, float64(p.uniqueMeetings))
	ch <- prometheus.MustNewConstMetric(c.uniqueBreakouts, prometheus.CounterValue, float64(p.uniqueBreakouts))
	if !p.up {
		return // meetings unknown: no figures rather than zeros
	}
	f := p.figures
	gauge(c.meetings, float64(f.meetings))
	gauge(c.participants, float64(f.participants))
	gauge(c.participantsMax, float64(f.participantsMax))
	gauge(c.listeners, float64(f.listeners))
	gauge(c.voice, float64(f.voice))
	gauge(c.video, float64(f.video))
	for t, n := range f.clients {
		gauge(c.clients, float64(n), t)
	}
	for o, n := range f.origins {
		gauge(c.origins, float64(n), o.server, o.name)
	}
	for i, h := range f.rooms {
		for j, b := range h.bounds {
			gauge(c.roomBucket[i], float64(h.cumulative[j]), leLabel(b))
		}
		gauge(c.roomBucket[i], float64(h.count), "+Inf")
		gauge(c.roomCount[i], float64(h.count))
		gauge(c.roomSum[i], h.sum)
	}
}

// leLabel writes a bucket bound as the exporter does (1.0, 0.5).
func leLabel(b float64) string {
	s := strconv.FormatFloat(b, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}
