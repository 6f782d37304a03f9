package balancer

import (
	"compress/gzip"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/bbb-agent/bbb-agent/balancer/placement"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestFleetMetrics: the fleet totals count the online nodes only, and the
// node counts cover every role, state and liveness.
func TestFleetMetrics(t *testing.T) {
	node := func(name string, role fleet.Role, st fleet.AdminState, online bool, l fleet.Load) nodeView {
		return nodeView{Node: records.Node{Name: name, Role: role, State: st, Load: l}, Online: online}
	}
	nodes := []nodeView{
		node("a", fleet.RoleBBB, fleet.Enabled, true, fleet.Load{Meetings: 2, Participants: 10, Voice: 6, Video: 3, Listeners: 2, CPUPercent: 40}),
		node("b", fleet.RoleBBB, fleet.Cordoned, true, fleet.Load{Meetings: 1, Participants: 5, Voice: 1, Video: 0, Listeners: 1}),
		// Offline: its last report is stale and counts in no total.
		node("c", fleet.RoleBBB, fleet.Enabled, false, fleet.Load{Meetings: 7, Participants: 70, Voice: 7, Video: 7, Listeners: 7}),
		node("t", "", fleet.Enabled, true, fleet.Load{}), // a role not recorded counts as bbb
		node("turn1", fleet.RoleTURN, fleet.Disabled, false, fleet.Load{}),
		// Figures past 32 bits show as the largest that fits; the totals
		// still add up (in 64 bits).
		node("huge1", fleet.RoleBBB, fleet.Enabled, true, fleet.Load{Participants: 1 << 40}),
		node("huge2", fleet.RoleBBB, fleet.Enabled, true, fleet.Load{Participants: math.MaxInt32}),
		// A state this version does not know counts in no series.
		node("odd", fleet.RoleBBB, "retired", false, fleet.Load{}),
	}
	nodes[1].Reason = "BBB not answering: connection refused"
	nodes[2].Reason = "offline: no report for 31s"
	nodes[3].Reason = "something a newer agent invented"
	m := newMetrics(func() []metricsNode { return metricsNodesOf(nodes, placement.DefaultPolicy()) }, newTransientCollector())
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"bbb_balancer_meetings 3", "bbb_balancer_voice_participants 7",
		"bbb_balancer_video_streams 3", "bbb_balancer_listeners 3",
		`bbb_balancer_nodes{liveness="online",role="bbb",state="enabled"} 4`,
		`bbb_balancer_nodes{liveness="online",role="bbb",state="cordoned"} 1`,
		`bbb_balancer_nodes{liveness="offline",role="bbb",state="enabled"} 1`,
		`bbb_balancer_nodes{liveness="offline",role="turn",state="disabled"} 1`,
		`bbb_balancer_nodes{liveness="online",role="turn",state="enabled"} 0`,
		`bbb_balancer_node_meetings{node="c"} 7`, `bbb_balancer_node_online{node="c"} 0`,
		`bbb_balancer_node_voice_participants{node="a"} 6`, `bbb_balancer_node_listeners{node="b"} 1`,
		`bbb_balancer_node_cpu_percent{node="a"} 40`, `bbb_balancer_node_state{node="b",state="cordoned"} 1`,
		`bbb_balancer_node_participants{node="huge1"} 2.147483647e+09`, "bbb_balancer_participants 4.294967309e+09", // 15 + 2 × (2³¹ - 1)
		`bbb_balancer_node_state{node="odd",state="enabled"} 0`, `bbb_balancer_node_state{node="odd",state="disabled"} 0`,
		`bbb_balancer_nodes{liveness="offline",role="bbb",state="disabled"} 0`,
		`bbb_balancer_node_healthy{node="a",reason=""} 1`, `bbb_balancer_node_healthy{node="b",reason="not_answering"} 0`,
		`bbb_balancer_node_healthy{node="c",reason="offline"} 0`, `bbb_balancer_node_healthy{node="t",reason="error"} 0`,
	} {
		if !strings.Contains(string(body), "\n"+want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	// A scrape copies one of these per node (metricsNode's comment).
	if size := unsafe.Sizeof(metricsNode{}); size > 56 {
		t.Errorf("a metricsNode takes %d bytes, want at most 56", size)
	}
}

// TestMetricsCollectAfterScrape: a scrape, once written, starts a
// collection (so that its short-lived copy and compressor do not set the
// heap's next goal); scrapes while that one runs start none.
func TestMetricsCollectAfterScrape(t *testing.T) {
	nodes := []nodeView{{Node: records.Node{Name: "a", Role: fleet.RoleBBB, State: fleet.Enabled}, Online: true}}
	m := newMetrics(func() []metricsNode { return metricsNodesOf(nodes, placement.DefaultPolicy()) }, newTransientCollector())
	started, release := make(chan struct{}, 4), make(chan struct{})
	var calls atomic.Int32
	m.collector.collect = func() {
		calls.Add(1)
		started <- struct{}{}
		<-release
	}
	scrape := func() {
		t.Helper()
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if !strings.Contains(rec.Body.String(), `bbb_balancer_node_online{node="a"} 1`) {
			t.Fatalf("scrape: %.200s", rec.Body.String())
		}
	}
	scrape()
	<-started
	scrape() // while the first scrape's collection runs: none more
	scrape()
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d collections for three scrapes, one of them still running; want 1", n)
	}
	close(release)
	for i := 0; m.collector.running.Load(); i++ {
		if i > 1e7 {
			t.Fatal("the collection never ended")
		}
		runtime.Gosched()
	}
	scrape()
	<-started
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d collections after the first ended and a scrape came; want 2", n)
	}
}

// TestMetricsExposition: /metrics parses with Prometheus' own text parser,
// plain and gzipped, with the counters' families and the fleet's side by
// side (no family twice), a label value that needs escaping intact, and
// one series per node in every per-node family.
func TestMetricsExposition(t *testing.T) {
	odd := `room "7" \ east`
	nodes := []nodeView{
		{Node: records.Node{Name: "a", Role: fleet.RoleBBB, State: fleet.Enabled, LoadMultiplier: 1,
			Load: fleet.Load{Meetings: 2, Participants: 7, CPUPercent: 12.5}}, Online: true, Reserved: 1},
		{Node: records.Node{Name: odd, Role: fleet.RoleBBB, State: fleet.Cordoned,
			Load: fleet.Load{Meetings: 1, CPUPercent: 99.123456789}}, Online: true, Reason: "BBB not answering: timeout"},
		{Node: records.Node{Name: "turn1", Role: fleet.RoleTURN, State: fleet.Disabled}},
	}
	policy := placement.DefaultPolicy()
	m := newMetrics(func() []metricsNode { return metricsNodesOf(nodes, policy) }, newTransientCollector())
	m.reports.Inc()
	m.apiRequests.WithLabelValues("join", "redirect").Add(3)
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)

	for _, gz := range []bool{false, true, true} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		} else {
			req.Header.Set("Accept-Encoding", "identity")
		}
		resp, err := srv.Client().Transport.RoundTrip(req) // no transparent gunzip
		if err != nil {
			t.Fatal(err)
		}
		var body io.Reader = resp.Body
		if got := resp.Header.Get("Content-Encoding") == "gzip"; got != gz {
			t.Fatalf("gzip asked %v, Content-Encoding %q", gz, resp.Header.Get("Content-Encoding"))
		}
		if gz {
			zr, err := gzip.NewReader(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			body = zr
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
			t.Errorf("Content-Type %q, want the text format 0.0.4", ct)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("gzip %v: Prometheus' parser refuses /metrics: %v", gz, err)
		}
		value := func(name string, labels ...string) float64 {
			t.Helper()
			f := fams[name]
			if f == nil {
				t.Fatalf("no family %s", name)
			}
		metric:
			for _, mt := range f.GetMetric() {
				if len(mt.GetLabel())*2 != len(labels) {
					continue
				}
				for i, l := range mt.GetLabel() {
					if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
						continue metric
					}
				}
				switch f.GetType() {
				case dto.MetricType_COUNTER:
					return mt.GetCounter().GetValue()
				default:
					return mt.GetGauge().GetValue()
				}
			}
			t.Fatalf("%s has no series %v", name, labels)
			return math.NaN()
		}
		if v := value("bbb_balancer_reports_total"); v != 1 {
			t.Errorf("reports_total %v, want 1", v)
		}
		if v := value("bbb_balancer_api_requests_total", "call", "join", "result", "redirect"); v != 3 {
			t.Errorf("api_requests_total{join,redirect} %v, want 3", v)
		}
		for _, name := range []string{"go_goroutines", "go_gc_gogc_percent", "go_cpu_classes_gc_total_cpu_seconds_total"} {
			if _, ok := fams[name]; !ok {
				t.Errorf("the Go collector's %s is missing", name)
			}
		}
		if v := value("bbb_balancer_node_cpu_percent", "node", odd); v != 99.123456789 {
			t.Errorf("cpu of %q: %v, want 99.123456789 (escaping or precision lost)", odd, v)
		}
		if v := value("bbb_balancer_node_healthy", "node", odd, "reason", "not_answering"); v != 0 {
			t.Errorf("healthy of %q: %v, want 0", odd, v)
		}
		if v := value("bbb_balancer_node_healthy", "node", "a", "reason", ""); v != 1 {
			t.Errorf("healthy of a: %v, want 1", v)
		}
		if v, want := value("bbb_balancer_node_load", "node", "a"), policy.Load(nodes[0].Node, 1); v != want {
			t.Errorf("load of a: %v, want %v (the policy's, a reservation included)", v, want)
		}
		if v := value("bbb_balancer_node_state", "node", "turn1", "state", "disabled"); v != 1 {
			t.Errorf("state of turn1: %v", v)
		}
		for _, g := range nodeGauges {
			if got := len(fams[g.name].GetMetric()); got != len(nodes) {
				t.Errorf("%s: %d series, want one per node (%d)", g.name, got, len(nodes))
			}
		}
		if got := len(fams["bbb_balancer_node_state"].GetMetric()); got != 3*len(nodes) {
			t.Errorf("node_state: %d series, want 3 per node", got)
		}
		if got := len(fams["bbb_balancer_nodes"].GetMetric()); got != 12 {
			t.Errorf("nodes: %d series, want 12 (2 roles x 3 states x 2 livenesses)", got)
		}
	}
}

// TestRegistryMetricsNodes: what /metrics says of each node in a live
// registry is what the node's full view says (online, reason, placement
// load with its reservations, the report's figures), sorted by name.
func TestRegistryMetricsNodes(t *testing.T) {
	clk := testenv.NewClock()
	e := newEnv(t, backends[0].dsn(t), clk)
	ctx := ctxT(t)
	add := func(name string, st fleet.AdminState, reportAgo time.Duration, l fleet.Load) {
		t.Helper()
		n, err := e.store.UpsertNode(ctx, records.Node{Name: name, Role: fleet.RoleBBB, State: st, Secret: "s-" + name,
			URL: "https://" + name + ".invalid/bigbluebutton/api/", ReportInterval: 5 * time.Second, CreatedAt: clk.Now(), LoadMultiplier: 1.5})
		if err != nil {
			t.Fatal(err)
		}
		if reportAgo >= 0 {
			r := records.Report{NodeID: n.ID, Seq: 1, ReceivedAt: clk.Now().Add(-reportAgo), Load: l}
			if _, err := e.store.RecordReports(ctx, []records.Report{r}); err != nil {
				t.Fatal(err)
			}
		}
	}
	add("zulu", fleet.Enabled, 0, fleet.Load{BBBHealthy: true, CPUPercent: 12.5, Meetings: 3, Participants: 40, Voice: 9, Video: 4, Listeners: 2})
	add("alpha", fleet.Cordoned, time.Second, fleet.Load{BBBHealthy: true, Meetings: 1, Participants: 2})
	add("mike", fleet.Enabled, 0, fleet.Load{BBBError: "BBB not answering: timeout"})
	add("gone", fleet.Disabled, time.Minute, fleet.Load{BBBHealthy: true, Meetings: 7})
	add("silent", fleet.Enabled, -1, fleet.Load{})
	if err := e.srv.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	e.srv.reg.mu.Lock()
	for _, en := range e.srv.reg.byID {
		if en.node.Name == "zulu" {
			en.reserved = 2 // placed, not yet in a report
		}
	}
	e.srv.reg.mu.Unlock()

	views := e.srv.reg.snapshot()
	want := metricsNodesOf(views, e.srv.cfg.Policy)
	got := e.srv.reg.metricsNodes()
	if len(got) != len(want) {
		t.Fatalf("metricsNodes has %d nodes, the snapshot %d", len(got), len(want))
	}
	var names []string
	for i := range got {
		names = append(names, got[i].Name)
		if got[i] != want[i] {
			t.Errorf("%s: metricsNodes says %+v; its view says %+v", got[i].Name, got[i], want[i])
		}
	}
	if s := strings.Join(names, " "); s != "alpha gone mike silent zulu" {
		t.Errorf("order %s, want by name", s)
	}
	// The view itself is right: zulu's reservations are in its load, mike
	// and the offline nodes have reasons, zulu none.
	for _, n := range got {
		switch n.Name {
		case "zulu":
			if !n.healthy() || !n.Online || n.Load.Voice != 9 || n.Placement <= e.srv.cfg.Policy.Load(views[4].Node, 0) {
				t.Errorf("zulu: %+v: want healthy, online, voice 9, reservations in its load", n)
			}
		case "mike", "gone", "silent":
			if n.healthy() {
				t.Errorf("%s: no reason given", n.Name)
			}
		}
	}
}

// metricsNodesOf is /metrics' view of nodes, as registry.metricsNodes
// makes it.
func metricsNodesOf(nodes []nodeView, p placement.Policy) []metricsNode {
	out := make([]metricsNode, len(nodes))
	for i := range nodes {
		out[i] = newMetricsNode(&nodes[i].Node, nodes[i].Online, nodes[i].Reserved, nodes[i].Reason, p)
	}
	return out
}

func TestAcceptsGzip(t *testing.T) {
	for h, want := range map[string]bool{
		"gzip": true, "deflate, gzip;q=1.0, *;q=0.5": true, "GZIP": true, " gzip ; q=0.8": true,
		"": false, "identity": false, "gzip;q=0": false, "gzip; q=0.000": false, "br": false,
	} {
		if got := acceptsGzip(h); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", h, got, want)
		}
	}
}
