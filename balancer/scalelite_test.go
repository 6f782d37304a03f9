package balancer

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/registrar"
)

// curl runs the real curl against the Scalelite API, signing the call with
// the balancer's secret as Scalelite's own scripts do; body "" is a GET.
func curl(t *testing.T, base, action, query, body string) string {
	t.Helper()
	bin, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("no curl in PATH")
	}
	u := base + "/scalelite/api/" + action + "?" + bbb.SignQuery(bbb.SHA256, action, query, lbSecret)
	args := []string{"-sS", "--max-time", "10", u}
	if body != "" {
		args = append(args, "-X", "POST", "-H", "Content-Type: application/json", "--data", body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		t.Fatalf("curl %s: %v", action, err)
	}
	return string(out)
}

func (e *env) onlyNode(t *testing.T) records.Node {
	t.Helper()
	nodes := e.srv.reg.snapshot()
	if len(nodes) != 1 {
		t.Fatalf("want one node, have %d", len(nodes))
	}
	return nodes[0].Node
}

// TestScaleliteServerAPI drives the balancer's Scalelite server API with
// bbb-agent's own Scalelite registrar and with signed curl calls.
func TestScaleliteServerAPI(t *testing.T) {
	e := newEnv(t, backends[0].dsn(t), testenv.NewClock())
	const nodeSecret = "node-secret-scalelite-abc"
	node := httptest.NewServer(sim.New(sim.Config{Secret: nodeSecret, Seed: 7}))
	t.Cleanup(node.Close)

	reg, err := registrar.NewScalelite(e.http.URL, lbSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := registrar.Registration{Node: "sl1", URL: node.URL, Secret: nodeSecret, Role: fleet.RoleBBB, Tags: []string{"gold"}, LoadMultiplier: 2}
	st, err := reg.Register(ctxT(t), r)
	if err != nil || st != fleet.Enabled {
		t.Fatalf("register through the Scalelite API: %q %v", st, err)
	}
	n := e.onlyNode(t)
	if n.State != fleet.Enabled || n.Source != records.SourcePoll || n.LoadMultiplier != 2 || len(n.Tags) != 1 || n.Tags[0] != "gold" || n.Secret != nodeSecret {
		t.Fatalf("the node as stored: %+v", n)
	}
	id := n.ID
	// A second registration (agent restart) keeps the server and its id.
	if st, err = reg.Register(ctxT(t), r); err != nil || st != fleet.Enabled || e.onlyNode(t).ID != id {
		t.Fatalf("registering again: %q %v, id %s → %s", st, err, id, e.onlyNode(t).ID)
	}
	if err := reg.Cordon(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := e.onlyNode(t).State; got != fleet.Cordoned {
		t.Fatalf("after Cordon: %s", got)
	}
	if rep, err := reg.Report(ctxT(t), registrar.Report{}); err != nil || rep.State != fleet.Cordoned {
		t.Fatalf("Report (getServerInfo): %+v %v", rep, err)
	}

	// Scalelite's scripts: signed curl calls.
	var servers []map[string]any
	if err := json.Unmarshal([]byte(curl(t, e.http.URL, "getServers", "", "")), &servers); err != nil || len(servers) != 1 {
		t.Fatalf("getServers: %v %v", servers, err)
	}
	if s := servers[0]; s["id"] != id || s["tag"] != "gold" || s["load_multiplier"] != "2.0" || s["state"] != "cordoned" || s["url"] != n.URL {
		t.Errorf("getServers' server: %v", s)
	}
	if out := curl(t, e.http.URL, "getServers", "x=1", ""); strings.Contains(out, "checksumError") {
		t.Errorf("a correctly signed call with parameters was refused: %s", out)
	}
	out := curl(t, e.http.URL, "updateServer", "", `{"id":"`+id+`","server":{"tag":"silver","load_multiplier":3}}`)
	if !strings.Contains(out, `"tag":"silver"`) || !strings.Contains(out, `"load_multiplier":"3.0"`) {
		t.Errorf("updateServer: %s", out)
	}
	if n := e.onlyNode(t); n.State != fleet.Cordoned || n.LoadMultiplier != 3 || n.Tags[0] != "silver" {
		t.Errorf("after updateServer (tag, multiplier; the state stays): %+v", n)
	}
	if out := curl(t, e.http.URL, "getServerInfo", "id=nope", ""); !strings.Contains(out, "Server not found") {
		t.Errorf("getServerInfo of an unknown id: %s", out)
	}
	if out := curl(t, e.http.URL, "updateServer", "", `{"id":"`+id+`","server":{"state":"sideways"}}`); !strings.Contains(out, "Invalid state") {
		t.Errorf("updateServer with a bad state: %s", out)
	}
	if out := curl(t, e.http.URL, "panicServer", "", `{"id":"`+id+`"}`); !strings.Contains(out, "has been disabled") {
		t.Errorf("panicServer: %s", out)
	}
	if got := e.onlyNode(t).State; got != fleet.Disabled {
		t.Errorf("after panicServer: %s", got)
	}
	if err := reg.Deregister(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if nodes := e.srv.reg.snapshot(); len(nodes) != 0 {
		t.Errorf("after deleteServer: %d nodes", len(nodes))
	}
	if out := curl(t, e.http.URL, "getServers", "", ""); !strings.Contains(out, "No servers found") {
		t.Errorf("getServers of an empty fleet: %s", out)
	}
}

// TestScaleliteServerAPIRefusesWrongChecksum: the balancer's secret, and
// nothing else, signs the server API.
func TestScaleliteServerAPIRefusesWrongChecksum(t *testing.T) {
	e := newEnv(t, backends[0].dsn(t), testenv.NewClock())
	reg, err := registrar.NewScalelite(e.http.URL, "not-the-balancer-secret")
	if err != nil {
		t.Fatal(err)
	}
	_, err = reg.Register(ctxT(t), registrar.Registration{Node: "x", URL: "http://127.0.0.1:9", Secret: "node-secret-0123456789", Role: fleet.RoleBBB})
	if err == nil || !strings.Contains(err.Error(), "checksumError") {
		t.Fatalf("a registration signed with another secret: %v", err)
	}
	if len(e.srv.reg.snapshot()) != 0 {
		t.Errorf("a refused call added a server")
	}
}
