package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/balancer/balancertest"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// exposition is one /metrics answer: sample values by "name{labels}", the
// sample names, and the families with their types.
type exposition struct {
	samples  map[string]string
	names    map[string]bool
	families map[string]string
}

func parseExposition(body string) exposition {
	e := exposition{samples: map[string]string{}, names: map[string]bool{}, families: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(f, " ")
			e.families[name] = typ
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		e.samples[line[:i]] = line[i+1:]
		e.names[strings.FieldsFunc(line, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
	}
	return e
}

// value is a sample's value, NaN-free; ok is false when it is absent.
func (e exposition) value(series string) (float64, bool) {
	s, ok := e.samples[series]
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}

// TestMetrics runs a balancer and two nodes (bbb-sim and bbb-agent) with
// known meetings and checks the balancer's fleet totals and per-node series
// and the agents' bigbluebutton-exporter series; then that README.md
// documents exactly the metrics both expose, and that the Grafana dashboard
// in packaging/grafana queries only metrics that exist.
func TestMetrics(t *testing.T) {
	bins := testenv.BuildCommands(t)
	bal := startBalancer(t, bins.Balancer, t.TempDir())
	secrets := map[string]string{"node-a": sim1Secret, "node-b": sim2Secret}
	sims := map[string]simNode{}
	agentMetrics := map[string]string{}
	for _, name := range []string{"node-a", "node-b"} {
		s := startSim(t, bins.Sim, "bbb-sim "+name, secrets[name])
		sims[name] = s
		dir := t.TempDir()
		addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
		agentMetrics[name] = "http://" + addr + "/metrics"
		testenv.StartAgent(t, testenv.AgentOpts{Name: "bbb-agent " + name, Bin: bins.Agent, Args: []string{"run",
			"--balancer-url", bal.Ready, "--agent-token", agentToken, "--bbb-url", s.URL, "--bbb-secret", secrets[name],
			"--node-name", name, "--state-dir", filepath.Join(dir, "state"), "--admin-socket", filepath.Join(dir, "agent.sock"),
			"--report-interval", "200ms", "--logind=false", "--recordings-dir", dir, "--metrics-listen", addr}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// node-a: 3 participants with a microphone, 1 with a webcam only.
	// node-b: 2 listen-only, 1 neither, and 2 in a breakout room, which the
	// exporter's figures count and the fleet's (running non-breakout
	// meetings) do not.
	people := map[string][]sim.AttendeeSpec{
		"node-a": {{Count: 3, Voice: true}, {Count: 1, Video: true}},
		"node-b": {{Count: 2, ListenOnly: true}, {Count: 1}},
	}
	for name, specs := range people {
		s := sims[name]
		if _, err := s.Client.Create(ctx, bbb.CreateRequest{MeetingID: "class-" + name, Name: "Class"}); err != nil {
			t.Fatal(err)
		}
		for _, spec := range specs {
			if _, err := s.Control.AddAttendees(ctx, "class-"+name, spec); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := sims["node-b"].Control.AddBreakouts(ctx, "class-node-b", sim.BreakoutSpec{Rooms: 1, AttendeesPerRoom: 2}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "both nodes online", func() bool {
		n := 0
		for _, s := range balancertest.Status(t, bins.Balancer, bal.Ready, adminToken) {
			if s.Online {
				n++
			}
		}
		return n == 2
	})
	// A meeting nobody joined, created through the balancer (its API and
	// placement counters), and a report the balancer refuses (its error counter).
	lb, err := bbb.NewClient(bal.Ready, lbSecret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lb.Create(ctx, bbb.CreateRequest{MeetingID: "empty-room", Name: "Empty"}); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, bal.Ready+agentapi.PathReport, strings.NewReader("{"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+agentToken)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a report that is not JSON: HTTP %d, want 400", resp.StatusCode)
	}

	fleetWant := map[string]float64{
		"bbb_balancer_meetings":                                             3,
		"bbb_balancer_participants":                                         7,
		"bbb_balancer_voice_participants":                                   5,
		"bbb_balancer_video_streams":                                        1,
		"bbb_balancer_listeners":                                            2,
		`bbb_balancer_nodes{liveness="online",role="bbb",state="enabled"}`:  2,
		`bbb_balancer_nodes{liveness="offline",role="bbb",state="enabled"}`: 0,
		`bbb_balancer_node_participants{node="node-a"}`:                     4,
		`bbb_balancer_node_participants{node="node-b"}`:                     3,
		`bbb_balancer_node_voice_participants{node="node-a"}`:               3,
		`bbb_balancer_node_listeners{node="node-b"}`:                        2,
		`bbb_balancer_node_video_streams{node="node-a"}`:                    1,
		`bbb_balancer_node_video_streams{node="node-b"}`:                    0,
		`bbb_balancer_node_online{node="node-a"}`:                           1,
		`bbb_balancer_node_state{node="node-b",state="enabled"}`:            1,
		`bbb_balancer_node_cpu_percent{node="node-a"}`:                      -1, // present, any value
	}
	var lbm exposition
	testenv.Eventually(t, 30*time.Second, "the fleet's totals at the balancer", func() bool {
		lbm = parseExposition(httpGetToken(t, bal.Ready+"/metrics", adminToken))
		return mismatches(lbm, fleetWant) == nil
	})
	meetingsA, _ := lbm.value(`bbb_balancer_node_meetings{node="node-a"}`)
	meetingsB, _ := lbm.value(`bbb_balancer_node_meetings{node="node-b"}`)
	if meetingsA+meetingsB != 3 || min(meetingsA, meetingsB) < 1 {
		t.Errorf("bbb_balancer_node_meetings: node-a %v, node-b %v; want 1 and 2 in some order (the empty room placed on either)", meetingsA, meetingsB)
	}

	// The agents: the exporter's figures count every meeting BBB lists.
	emptyOnA := meetingsA == 2
	agentWant := map[string]map[string]float64{
		"node-a": {"bbb_meetings": 1 + b2f(emptyOnA), "bbb_meetings_participants": 4, "bbb_meetings_voice_participants": 3,
			"bbb_meetings_video_participants": 1, "bbb_meetings_listeners": 0, "bbb_api_up": 1},
		"node-b": {"bbb_meetings": 2 + b2f(!emptyOnA), "bbb_meetings_participants": 5, "bbb_meetings_voice_participants": 2,
			"bbb_meetings_video_participants": 0, "bbb_meetings_listeners": 2, "bbb_api_up": 1, "bbb_unique_breakout_rooms_total": 1},
	}
	scraped := []exposition{lbm}
	for name, want := range agentWant {
		labelled := map[string]float64{`bbb_exporter{node="` + name + `",version="dev"}`: 1,
			`bbb_meetings_participant_clients{node="` + name + `",type="html5"}`: want["bbb_meetings_participants"]}
		for k, v := range want {
			labelled[k+`{node="`+name+`"}`] = v
		}
		var am exposition
		testenv.Eventually(t, 10*time.Second, name+"'s exporter series", func() bool {
			am = parseExposition(testenv.GetBody(t, agentMetrics[name]))
			return mismatches(am, labelled) == nil
		})
		scraped = append(scraped, am)
	}

	t.Run("README documents every metric", func(t *testing.T) {
		documented := readmeMetrics(t)
		exposed := map[string]bool{}
		for _, e := range scraped {
			for f := range e.families {
				if !standardFamily(f) {
					exposed[f] = true
				}
			}
		}
		for f := range exposed {
			if !documented[f] {
				t.Errorf("%s is exposed but not documented: add a row to the Metrics section of README.md", f)
			}
		}
		for f := range documented {
			if !exposed[f] {
				t.Errorf("README.md documents %s, which neither /metrics exposes: remove its row or expose it", f)
			}
		}
	})

	t.Run("the Grafana dashboard queries existing metrics", func(t *testing.T) {
		names := map[string]bool{}
		for _, e := range scraped {
			for n := range e.names {
				names[n] = true
			}
		}
		for _, q := range dashboardQueries(t) {
			for _, m := range metricName.FindAllString(q.expr, -1) {
				if !names[m] {
					t.Errorf("%s queries %s, which no /metrics exposes: %s", q.where, m, q.expr)
				}
			}
		}
	})
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// mismatches lists the wanted series that are absent or differ (a want of
// -1: present with any value).
func mismatches(e exposition, want map[string]float64) []string {
	var out []string
	for k, w := range want {
		v, ok := e.value(k)
		if !ok || (w != -1 && v != w) {
			out = append(out, fmt.Sprintf("%s = %s, want %v", k, e.samples[k], w))
		}
	}
	slices.Sort(out)
	return out
}

// standardFamily says whether a family is one of client_golang's Go runtime,
// process and handler series, documented in README.md as a group.
func standardFamily(name string) bool {
	return strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_")
}

// metricName finds the project's metric names in a PromQL expression.
var metricName = regexp.MustCompile(`\bbbb_[a-z0-9_]+`)

// readmeMetrics are the metric names in the first column of the tables of
// README.md's Metrics section.
func readmeMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Metrics\n")
	if !ok {
		t.Fatal("README.md has no ## Metrics section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	out := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || !strings.HasPrefix(line, "|") {
			continue
		}
		for _, m := range regexp.MustCompile("`(bbb_[a-z0-9_]+)").FindAllStringSubmatch(cells[1], -1) {
			out[m[1]] = true
		}
	}
	if len(out) == 0 {
		t.Fatal("README.md's Metrics section names no metric in its tables")
	}
	return out
}

// dashboardQuery is one query of the Grafana dashboard: a panel's or a variable's.
type dashboardQuery struct{ where, expr string }

// dashboardQueries reads packaging/grafana/bbb-fleet.json: valid JSON, a
// Prometheus datasource variable that every panel uses, and its queries.
func dashboardQueries(t *testing.T) []dashboardQuery {
	t.Helper()
	b, err := os.ReadFile("../../packaging/grafana/bbb-fleet.json")
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title      string `json:"title"`
		Type       string `json:"type"`
		Datasource any    `json:"datasource"`
		Targets    []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	var d struct {
		Title      string  `json:"title"`
		UID        string  `json:"uid"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name, Type string
				Query      any
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("bbb-fleet.json: %v", err)
	}
	dsVar := ""
	var out []dashboardQuery
	for _, v := range d.Templating.List {
		switch q, _ := json.Marshal(v.Query); {
		case v.Type == "datasource" && v.Query == "prometheus":
			dsVar = v.Name
		case v.Type == "query":
			out = append(out, dashboardQuery{"variable " + v.Name, string(q)})
		}
	}
	if dsVar == "" || d.Title == "" || d.UID == "" {
		t.Fatalf("bbb-fleet.json: title %q, uid %q, Prometheus datasource variable %q: all three needed", d.Title, d.UID, dsVar)
	}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		ds, _ := json.Marshal(p.Datasource)
		if !strings.Contains(string(ds), "${"+dsVar+"}") {
			t.Errorf("panel %q: datasource %s, want the ${%s} variable", p.Title, ds, dsVar)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.Expr == "" || !metricName.MatchString(q.Expr) {
				t.Errorf("panel %q: query %q names no metric of the project", p.Title, q.Expr)
			}
			out = append(out, dashboardQuery{"panel " + p.Title, q.Expr})
		}
	}
	if len(out) < 8 {
		t.Errorf("bbb-fleet.json has %d queries; want the fleet, per-node, health and agent panels", len(out))
	}
	return out
}
