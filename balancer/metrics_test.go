package balancer

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bbb-agent/bbb-agent/balancer/placement"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
	}
	m := newMetrics(func() []nodeView { return nodes }, placement.DefaultPolicy())
	srv := httptest.NewServer(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
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
		"bbb_balancer_meetings 3", "bbb_balancer_participants 15", "bbb_balancer_voice_participants 7",
		"bbb_balancer_video_streams 3", "bbb_balancer_listeners 3",
		`bbb_balancer_nodes{liveness="online",role="bbb",state="enabled"} 2`,
		`bbb_balancer_nodes{liveness="online",role="bbb",state="cordoned"} 1`,
		`bbb_balancer_nodes{liveness="offline",role="bbb",state="enabled"} 1`,
		`bbb_balancer_nodes{liveness="offline",role="turn",state="disabled"} 1`,
		`bbb_balancer_nodes{liveness="online",role="turn",state="enabled"} 0`,
		`bbb_balancer_node_meetings{node="c"} 7`, `bbb_balancer_node_online{node="c"} 0`,
		`bbb_balancer_node_voice_participants{node="a"} 6`, `bbb_balancer_node_listeners{node="b"} 1`,
		`bbb_balancer_node_cpu_percent{node="a"} 40`, `bbb_balancer_node_state{node="b",state="cordoned"} 1`,
	} {
		if !strings.Contains(string(body), "\n"+want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}
