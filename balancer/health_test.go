package balancer

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// TestHealthChanges walks nodes through the causes of ill health and checks
// that each change of reason is reported once, with the reason status shows.
func TestHealthChanges(t *testing.T) {
	clock := testenv.NewClock()
	r := newRegistry(nil, &Config{Clock: clock.Now, MissedReports: 3, DefaultReportInterval: 5 * time.Second, PollInterval: 10 * time.Second})
	r.put(records.Node{ID: "a", Name: "agent1", Role: fleet.RoleBBB, Source: records.SourceAgent, ReportInterval: 5 * time.Second})
	r.put(records.Node{ID: "p", Name: "polled1", Role: fleet.RoleBBB, Source: records.SourcePoll})
	r.put(records.Node{ID: "t", Name: "turn1", Role: fleet.RoleTURN, Source: records.SourceAgent, ReportInterval: 5 * time.Second})

	step := func(what string, want ...healthChange) {
		t.Helper()
		got := r.healthChanges()
		slices.SortFunc(got, func(a, b healthChange) int { return strings.Compare(a.node, b.node) })
		if !slices.Equal(got, want) {
			t.Errorf("%s: changes %+v, want %+v", what, got, want)
		}
		for _, c := range got {
			if v := r.viewByName(t, c.node); v.Reason != c.reason {
				t.Errorf("%s: %s shows reason %q, the log says %q", what, c.node, v.Reason, c.reason)
			}
		}
	}
	report := func(name string, seq int64, load fleet.Load) {
		t.Helper()
		if _, err := r.report(name, "run", seq, load); err != nil {
			t.Fatal(err)
		}
	}

	step("just added: not reported, but not late either")
	report("agent1", 1, fleet.Load{BBBHealthy: true})
	report("turn1", 1, fleet.Load{BBBHealthy: true, TURNHealthy: true})
	r.polled("p", clock.Now(), fleet.Load{BBBHealthy: true})
	step("all healthy")

	clock.Advance(time.Second)
	report("agent1", 2, fleet.Load{BBBError: "BBB hanging: no answer in 5s"})
	report("turn1", 2, fleet.Load{BBBHealthy: true})
	r.pollFailed("p", "BBB not answering: dial tcp 127.0.0.1:1: connect: connection refused")
	step("three failures",
		healthChange{node: "agent1", reason: "BBB hanging: no answer in 5s"},
		healthChange{node: "polled1", reason: "BBB not answering: dial tcp 127.0.0.1:1: connect: connection refused"},
		healthChange{node: "turn1", reason: "TURN: the node fails its own STUN/TURN probe"})
	report("agent1", 3, fleet.Load{BBBError: "BBB hanging: no answer in 5s"})
	r.pollFailed("p", "BBB not answering: dial tcp 127.0.0.1:1: connect: connection refused")
	step("the same failures again: nothing new")

	clock.Advance(2 * time.Second)
	r.polled("p", clock.Now(), fleet.Load{BBBHealthy: true})
	if !r.markUnhealthy("p", "checksumError") {
		t.Fatal("markUnhealthy: the node was healthy")
	}
	report("agent1", 4, fleet.Load{BBBError: "checksumError: wrong secret\nand a second line"})
	step("other reasons",
		healthChange{node: "agent1", reason: "checksumError: wrong secret and a second line", was: "BBB hanging: no answer in 5s"},
		healthChange{node: "polled1", reason: fleet.ReasonChecksum, was: "BBB not answering: dial tcp 127.0.0.1:1: connect: connection refused"})
	if v := r.viewByName(t, "polled1"); fleet.ReasonClass(v.Reason) != fleet.ChecksumError || v.Online != true {
		t.Errorf("polled1 refused the checksum: %+v", v)
	}

	r.polled("p", clock.Now().Add(time.Millisecond), fleet.Load{BBBHealthy: true})
	report("agent1", 5, fleet.Load{BBBHealthy: true})
	report("turn1", 3, fleet.Load{TURNHealthy: true})
	step("mended",
		healthChange{node: "agent1", was: "checksumError: wrong secret and a second line"},
		healthChange{node: "polled1", was: fleet.ReasonChecksum},
		healthChange{node: "turn1", was: "TURN: the node fails its own STUN/TURN probe"})

	clock.Advance(16 * time.Second) // agents: 3 × 5 s; the polled node: 3 × 10 s
	step("agents silent",
		healthChange{node: "agent1", reason: "offline: no report for over 15s (3 report intervals)"},
		healthChange{node: "turn1", reason: "offline: no report for over 15s (3 report intervals)"})
	clock.Advance(15 * time.Second)
	step("polls silent", healthChange{node: "polled1", reason: "offline: no poll answered for over 30s"})
	step("still silent: nothing new")

	// A node that never reports is called offline once it is late.
	r.put(records.Node{ID: "n", Name: "new1", Role: fleet.RoleBBB, Source: records.SourceAgent, ReportInterval: 5 * time.Second})
	step("new node")
	clock.Advance(16 * time.Second)
	step("new node late", healthChange{node: "new1", reason: "offline: never reported"})
	// An agent without reasons (an older one) still gets one.
	report("new1", 1, fleet.Load{})
	step("older agent", healthChange{node: "new1", reason: "BBB error: the agent reports BBB unhealthy without a reason (an older agent; its log says why)", was: "offline: never reported"})
}

func TestVersionTooOld(t *testing.T) {
	for _, tc := range []struct {
		version string
		alg     bbb.Algorithm
		old     bool
	}{
		{"2.3.18", bbb.SHA256, true},
		{"2.2", bbb.SHA512, true},
		{"2.3.18", bbb.SHA1, false},
		{"2.4.0", bbb.SHA256, false},
		{"3.0.4", bbb.SHA256, false},
		{"", bbb.SHA256, false},
		{"v2", bbb.SHA256, false},
	} {
		r := versionTooOld(tc.version, tc.alg)
		if (r != "") != tc.old || tc.old && (fleet.ReasonClass(r) != fleet.VersionTooOld || !strings.Contains(r, "BBB "+tc.version+" takes only sha1")) {
			t.Errorf("versionTooOld(%q, %s) = %q", tc.version, tc.alg, r)
		}
	}
}

// viewByName is the node's view, failing the test when there is none.
func (r *registry) viewByName(t *testing.T, name string) nodeView {
	t.Helper()
	n, ok := r.byNodeName(name)
	if !ok {
		t.Fatalf("no node %s", name)
	}
	v, _ := r.view(n.ID)
	return v
}

// TestRegistryFind: a node is found by its ID or its name; an ID wins over
// another node's name; a renamed node is found by its new name only, and a
// dropped one not at all.
func TestRegistryFind(t *testing.T) {
	clock := testenv.NewClock()
	r := newRegistry(nil, &Config{Clock: clock.Now, MissedReports: 3, DefaultReportInterval: 5 * time.Second})
	r.put(records.Node{ID: "id-a", Name: "bbb1", Role: fleet.RoleBBB, Source: records.SourceAgent})
	r.put(records.Node{ID: "id-b", Name: "id-a", Role: fleet.RoleBBB, Source: records.SourceAgent}) // a name that is an ID
	for key, want := range map[string]string{"id-a": "bbb1", "bbb1": "bbb1", "id-b": "id-a"} {
		if n, ok := r.find(key); !ok || n.Name != want {
			t.Errorf("find(%q) = %q, %v; want %q", key, n.Name, ok, want)
		}
	}
	r.put(records.Node{ID: "id-a", Name: "bbb9", Role: fleet.RoleBBB, Source: records.SourceAgent}) // renamed
	if _, ok := r.find("bbb1"); ok {
		t.Error("found a node by its old name")
	}
	if n, ok := r.find("bbb9"); !ok || n.ID != "id-a" {
		t.Errorf("find(bbb9) = %+v, %v", n.Node, ok)
	}
	r.remove("id-b")
	for _, key := range []string{"id-b", "", "nobody"} {
		if n, ok := r.find(key); ok {
			t.Errorf("find(%q) found %q", key, n.Name)
		}
	}
}

// TestWriteNodeList: the list written a chunk at a time is, byte for byte,
// what writeJSON makes of the whole fleet's views in name order, also
// across chunks, and for a selection of the nodes.
func TestWriteNodeList(t *testing.T) {
	clock := testenv.NewClock()
	r := newRegistry(nil, &Config{Clock: clock.Now, MissedReports: 3, DefaultReportInterval: 5 * time.Second})
	for i := range 2*listChunk + 7 {
		role := fleet.RoleBBB
		if i%10 == 3 {
			role = fleet.RoleTURN
		}
		// Names not in the order of IDs, one with characters JSON escapes.
		r.put(records.Node{ID: fmt.Sprintf("id-%04d", i), Name: fmt.Sprintf("bbb%04d<&>", (i*7919)%(2*listChunk+7)), Role: role,
			Source: records.SourceAgent, Load: fleet.Load{Meetings: i}})
	}
	view := func(n nodeView) map[string]any {
		return map[string]any{"id": n.ID, "name": n.Name, "meetings": n.Load.Meetings}
	}
	for _, keep := range []func(*records.Node) bool{nil, func(n *records.Node) bool { return n.Role == fleet.RoleTURN }} {
		got := httptest.NewRecorder()
		writeNodeList(got, r, r.idsByName(keep), view)
		var all []map[string]any
		for _, n := range r.snapshot() {
			if keep == nil || keep(&n.Node) {
				all = append(all, view(n))
			}
		}
		want := httptest.NewRecorder()
		writeJSON(want, http.StatusOK, all)
		if got.Code != want.Code || got.Header().Get("Content-Type") != want.Header().Get("Content-Type") || got.Body.String() != want.Body.String() {
			t.Fatalf("streamed list (%d nodes) differs from the whole array:\n%.300s\nwant\n%.300s", len(all), got.Body.String(), want.Body.String())
		}
	}
	empty := httptest.NewRecorder()
	writeNodeList(empty, r, nil, view)
	if empty.Body.String() != "[]\n" {
		t.Errorf("no nodes: %q", empty.Body.String())
	}
}
