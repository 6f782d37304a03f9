package balancer

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	rtmetrics "runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

const (
	memNodes    = 10_000
	memMeetings = 100_000
)

// goMemory is the Go heap's live objects after a full collection and all
// memory the Go runtime holds from the OS (heap, stacks, metadata), in MiB.
func goMemory() (liveHeap, runtimeTotal float64) {
	runtime.GC()
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}}
	rtmetrics.Read(s)
	return float64(s[0].Value.Uint64()) / (1 << 20), float64(s[1].Value.Uint64()) / (1 << 20)
}

// BenchmarkMemory: one replica (SQLite) holding 10,000 online nodes in its
// registry and 100,000 meetings in its meeting -> node cache, filled the
// way production fills it (the nodes' reports through the agent API, a
// join of every meeting through the BBB API front). It reports, in MiB:
// the Go heap the replica adds (live objects after a collection, minus the
// same figure before the replica was built), the Go runtime's total
// memory, and the benchmark process's RSS; the process holds nothing else
// of size (no simulators, no load generator: joins go to the handler in
// process, every node's URL is a placeholder).
func BenchmarkMemory(b *testing.B) {
	baseHeap, _ := goMemory()
	e := newEnv(b, benchBackends[0].dsn(b), testenv.NewClock())
	e.srv.cfg.Clock = time.Now
	ctx := b.Context()
	names := make([]string, memNodes)
	ids := make([]string, memNodes)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < memNodes; i += 8 {
				names[i] = fmt.Sprintf("fleet%05d", i)
				n, err := e.store.UpsertNode(ctx, records.Node{Name: names[i], URL: fmt.Sprintf("https://%s.invalid/bigbluebutton/api/", names[i]),
					Secret: "node-secret-" + names[i], ReportInterval: 5 * time.Second, CreatedAt: time.Now()})
				if err != nil {
					b.Error(err)
					return
				}
				ids[i] = n.ID
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	if err := e.srv.Refresh(ctx); err != nil {
		b.Fatal(err)
	}
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < memMeetings; i += 8 {
				m := records.Meeting{MeetingID: fmt.Sprintf("meeting-%06d", i), NodeID: ids[i%memNodes], PlacedAt: time.Now()}
				if _, _, err := e.store.ClaimMeeting(ctx, m); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	// The reports last: the nodes stay online (three missed reports) while
	// the joins run.
	client := benchHTTPClient(8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < memNodes; i += 8 {
				body, _ := json.Marshal(agentapi.ReportRequest{Node: names[i], Seq: 1, Load: fleet.Load{BBBHealthy: true, Meetings: memMeetings / memNodes}})
				if err := postAgent(ctx, client, e.http.URL+agentapi.PathReport, body); err != nil {
					b.Errorf("report %s: %v", names[i], err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	h := e.srv.Handler()
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < memMeetings; i += 8 {
				req := httptest.NewRequest(http.MethodGet, e.client.JoinURL(bbb.JoinRequest{MeetingID: fmt.Sprintf("meeting-%06d", i), FullName: "x", Role: bbb.RoleViewer}), nil)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusFound {
					b.Errorf("join meeting-%06d: HTTP %d: %s", i, rec.Code, rec.Body)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	if n := len(e.srv.reg.meetings.nodes); n != memMeetings {
		b.Fatalf("the meeting cache holds %d meetings, want %d", n, memMeetings)
	}
	heap, total := goMemory()
	b.ReportMetric(heap-baseHeap, "replica-heap-MiB")
	b.ReportMetric(total, "go-runtime-MiB")
	b.ReportMetric(rssMiB(b), "process-rss-MiB")
	runtime.KeepAlive(e)
}
