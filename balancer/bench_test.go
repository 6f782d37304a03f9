package balancer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// The benchmarks drive a real replica over loopback HTTP: the BBB API with
// concurrent clients against bbb-sim back-ends, and the agent API at the
// report rate of a 10,000-node fleet. Client, balancer and simulators share
// this process and its cores, so every figure includes the load generator's
// own cost.

// benchBackends are the databases the benchmarks run on.
var benchBackends = []struct {
	name string
	dsn  func(b *testing.B) string
}{
	{"sqlite", func(b *testing.B) string { return "sqlite:" + b.TempDir() + "/balancer.db" }},
	{"postgres", func(b *testing.B) string { return testenv.Postgres(b) }},
}

const (
	benchSimNodes = 4  // bbb-sim back-ends
	benchClients  = 48 // concurrent BBB API clients
	benchMeetings = 256
)

// newBenchEnv is a replica on real time, so that reports are newer than the
// stored ones and liveness expires as in production, with bbb-sim nodes that
// keep reporting until the benchmark ends.
// createBenchMeetings creates the running meetings joins go to.
func (e *env) createBenchMeetings(b *testing.B) {
	for i := range benchMeetings {
		if _, err := e.client.Create(b.Context(), bbb.CreateRequest{MeetingID: fmt.Sprintf("bench-%04d", i), Name: "Bench"}); err != nil {
			b.Fatal(err)
		}
	}
}

func newBenchEnv(b *testing.B, dsn string) *env { return newBenchEnvNodes(b, dsn, benchSimNodes) }

// newBenchEnvNodes is newBenchEnv with n bbb-sim nodes.
func newBenchEnvNodes(b *testing.B, dsn string, n int) *env {
	e := newEnv(b, dsn, testenv.NewClock())
	e.srv.cfg.Clock = time.Now // before any request: nothing reads it yet
	e.addNodes(n)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait() })
	client := benchHTTPClient(4)
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for seq := int64(1); ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, nd := range e.nodes {
				body, _ := json.Marshal(agentapi.ReportRequest{Node: nd.name, Seq: seq, Load: fleet.Load{BBBHealthy: true}})
				if err := postAgent(ctx, client, e.http.URL+agentapi.PathReport, body); err != nil && ctx.Err() == nil {
					b.Errorf("report %s: %v", nd.name, err)
				}
			}
		}
	})
	return e
}

// benchHTTPClient keeps conns connections to the balancer and never follows
// join's redirect.
func benchHTTPClient(conns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Timeout: 30 * time.Second,
	}
}

// postAgent sends an agent API request with the agent token and wants 200.
func postAgent(ctx context.Context, c *http.Client, url string, body []byte) error {
	return postAgentAs(ctx, c, url, agentToken, body)
}

// benchCredential is the node credential a benchmark's seeded node has (its
// hash is stored as a registration would store it): the benchmarks report
// as today's agents do, with their node's own credential.
func benchCredential(name string) string {
	return "bench-credential-" + name + "-0123456789abcdefghijklmnop"
}

// agentReportBody is a report as a bbb-agent sends it: its run ID, the
// whole load with figures that move from report to report, and the
// meetings running on the node.
func agentReportBody(name string, seq int64, meetings []string) []byte {
	v := float64(seq%17) / 17
	load := fleet.Load{CPUPercent: 20 + 40*v, CPUCores: 16, Load1: 2 + 3*v, Load5: 2.5 + v, Load15: 2.4, MemTotalBytes: 64 << 30,
		MemUsedBytes: 20<<30 + uint64(v*(1<<30)), NetRxBytesPerSec: 4e6 + 1e6*v, NetTxBytesPerSec: 9e6 + 2e6*v, DiskFreeBytes: 80 << 30,
		Meetings: len(meetings), Participants: 15 * len(meetings), Voice: 5 * len(meetings), Video: 3 * len(meetings),
		Listeners: 10 * len(meetings), LargestMeeting: 30, BBBHealthy: true, BBBVersion: "3.0.4"}
	body, _ := json.Marshal(agentapi.ReportRequest{Node: name, Seq: seq, Run: "run-" + name, Load: load, MeetingIDs: meetings})
	return body
}

// postAgentAs sends an agent API request with a bearer token (the agent
// token or a node credential) and wants 200.
func postAgentAs(ctx context.Context, c *http.Client, url, token string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

// getOK fetches url and checks the answer: want is the status, and a 200
// must be a SUCCESS envelope.
func getOK(c *http.Client, url string, want int) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return err
	case resp.StatusCode != want:
		return fmt.Errorf("HTTP %d, want %d: %s", resp.StatusCode, want, body)
	case want == http.StatusOK && !bytes.Contains(body, []byte("<returncode>SUCCESS</returncode>")):
		return fmt.Errorf("not SUCCESS: %s", body)
	}
	return nil
}

// latencies collects request durations from many goroutines.
type latencies struct {
	mu  sync.Mutex
	all []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.all = append(l.all, d...)
	l.mu.Unlock()
}

// report adds p50 and p99 in ms, and requests/s over elapsed.
func (l *latencies) report(b *testing.B, prefix string, elapsed time.Duration) {
	if len(l.all) == 0 {
		return
	}
	b.ReportMetric(float64(len(l.all))/elapsed.Seconds(), prefix+"req/s")
	b.ReportMetric(l.pct(0.50), prefix+"p50-ms")
	b.ReportMetric(l.pct(0.99), prefix+"p99-ms")
}

// pct is the p quantile in ms, 0 without requests.
func (l *latencies) pct(p float64) float64 {
	if len(l.all) == 0 {
		return 0
	}
	slices.Sort(l.all)
	return float64(l.all[min(len(l.all)-1, int(p*float64(len(l.all))))].Microseconds()) / 1000
}

// hammer sends the URLs with benchClients concurrent clients, checks each
// answer's status, and reports throughput, latency and the CPU time of the
// whole process (clients and simulators too) per request.
func hammer(b *testing.B, urls []string, want int) {
	client := benchHTTPClient(benchClients)
	var (
		next atomic.Int64
		lat  latencies
		wg   sync.WaitGroup
	)
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	for range benchClients {
		wg.Go(func() {
			mine := make([]time.Duration, 0, len(urls)/benchClients+1)
			defer func() { lat.add(mine) }()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(urls) {
					return
				}
				t0 := time.Now()
				if err := getOK(client, urls[i], want); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime()-cpu
	b.StopTimer()
	lat.report(b, "", elapsed)
	b.ReportMetric(float64(cpu.Microseconds())/float64(len(urls)), "cpu-µs/op")
}

// BenchmarkJoin: signed joins for random running meetings, answered with a
// 302 to the meeting's node, from concurrent keep-alive clients.
func BenchmarkJoin(b *testing.B) {
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			e := newBenchEnv(b, be.dsn(b))
			e.createBenchMeetings(b)
			rng := rand.New(rand.NewPCG(1, 2))
			urls := make([]string, b.N)
			for i := range urls {
				urls[i] = e.client.JoinURL(bbb.JoinRequest{MeetingID: fmt.Sprintf("bench-%04d", rng.IntN(benchMeetings)),
					FullName: fmt.Sprintf("User %d", i), Role: bbb.RoleViewer})
			}
			hammer(b, urls, http.StatusFound)
		})
	}
}

// BenchmarkCreate: a new meeting per request, placed and forwarded to a
// bbb-sim node, from concurrent keep-alive clients.
func BenchmarkCreate(b *testing.B) {
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			e := newBenchEnv(b, be.dsn(b))
			urls := make([]string, b.N)
			for i := range urls {
				urls[i] = e.client.URL(bbb.CallCreate, bbb.CreateRequest{MeetingID: fmt.Sprintf("create-%07d", i), Name: "Bench"}.Values())
			}
			hammer(b, urls, http.StatusOK)
		})
	}
}

// The ingestion benchmark's fleet: 10,000 nodes reporting every 5 s.
const (
	ingestNodes    = 10_000
	ingestTURN     = 4 // of the nodes
	ingestInterval = 5 * time.Second
	ingestWindow   = 15 * time.Second // measured wall time
	ingestJoinRate = 2_000            // joins/s of the concurrent BBB API load
	ingestTick     = 10 * time.Millisecond
)

// BenchmarkReportIngestion: 10,000 registered nodes report every 5 s
// (2,000 reports/s over the agent API) while the registry's flush and
// refresh run and a steady join load measures the BBB API's latency. Each
// iteration is one fixed 8 s window (the default benchtime runs one); a
// -benchtime of Nx runs N windows.
func BenchmarkReportIngestion(b *testing.B) {
	for _, be := range benchBackends {
		b.Run(be.name, func(b *testing.B) {
			e := newBenchEnv(b, be.dsn(b))
			ctx := b.Context()
			e.createBenchMeetings(b)
			// Registration speed is not the point: straight into the store.
			// A few of the nodes are TURN servers, which every report's
			// answer lists.
			names := make([]string, ingestNodes)
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					for i := w; i < ingestNodes; i += 8 {
						names[i] = fmt.Sprintf("fleet%05d", i)
						n := records.Node{Name: names[i], URL: fmt.Sprintf("https://%s.invalid/bigbluebutton/api/", names[i]),
							Secret: "node-secret", ReportInterval: ingestInterval, CreatedAt: time.Now(),
							CredentialHash: credentialHash(benchCredential(names[i]))}
						if i%(ingestNodes/ingestTURN) == 0 {
							n.Role, n.URL, n.Secret = fleet.RoleTURN, "", ""
						}
						_, err := e.store.UpsertNode(ctx, n)
						if err != nil {
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
			if err := e.srv.Refresh(ctx); err != nil {
				b.Fatal(err)
			}
			runCtx, stop := context.WithCancel(context.Background())
			var run sync.WaitGroup
			run.Go(func() {
				if err := e.srv.Run(runCtx); err != nil {
					b.Error(err)
				}
			})
			defer func() { stop(); run.Wait() }()

			b.ResetTimer()
			for range b.N {
				ingest(b, e, names)
			}
			// The whole benchmark process: replica, 10,000 nodes' load
			// generator and the simulators.
			b.ReportMetric(rssMiB(b), "process-rss-MiB")
		})
	}
}

// ingest measures the join load alone for a short while, then reports and
// joins together for ingestWindow, and reports the figures: cpu-µs/report
// is the CPU the reports add to the join load alone, the rest is of the
// whole window.
func ingest(b *testing.B, e *env, names []string) {
	rng := rand.New(rand.NewPCG(3, 4))
	joinURLs := make([]string, 4096)
	for i := range joinURLs {
		joinURLs[i] = e.client.JoinURL(bbb.JoinRequest{MeetingID: fmt.Sprintf("bench-%04d", rng.IntN(benchMeetings)),
			FullName: fmt.Sprintf("User %d", i), Role: bbb.RoleViewer})
	}
	l := &loadGen{e: e, names: names, joinURLs: joinURLs, reports: benchHTTPClient(64), joins: benchHTTPClient(32)}
	// Joins alone and joins with the reports in alternating windows: this
	// machine's own noise moves one window's figures by half.
	var base, full window
	for range ingestRounds {
		base.merge(l.run(b, ingestWindow/4/ingestRounds, false))
		full.merge(l.run(b, ingestWindow/ingestRounds, true))
		time.Sleep(ingestSettle) // not a wait for a result: keeps the last flush out of the next joins-only window
	}

	baseCores := base.cpu.Seconds() / base.elapsed.Seconds()
	fullCores := full.cpu.Seconds() / full.elapsed.Seconds()
	b.ReportMetric(float64(full.reports)/full.elapsed.Seconds(), "reports/s")
	b.ReportMetric(fullCores, "cpu-cores")
	b.ReportMetric(baseCores, "joins-only-cores")
	// What the reports add: the balancer's handling, flushes and refreshes,
	// and the load generator's own side of 2,000 requests a second.
	b.ReportMetric(fullCores-baseCores, "ingest-cores")
	if full.reports > 0 {
		added := full.cpu.Seconds() - baseCores*full.elapsed.Seconds()
		b.ReportMetric(added*1e6/float64(full.reports), "cpu-µs/report")
	}
	full.lat.report(b, "join-", full.elapsed)
	// The BBB API's p99 under the reports against the joins alone.
	if idle := base.lat.pct(0.99); idle > 0 {
		b.ReportMetric(idle, "join-idle-p99-ms")
		b.ReportMetric(full.lat.pct(0.99)/idle, "join-p99-vs-idle")
	}
}

// loadGen sends reports of the fleet's nodes in turn and joins for random
// meetings, each at a steady rate.
type loadGen struct {
	e               *env
	names, joinURLs []string
	meetings        [][]string // by node, as names
	reports, joins  *http.Client
	nextReport      int
	nextJoin        int
}

// ingestRounds is how many pairs of windows ingest alternates, and
// ingestSettle the pause after reports (a flush and a refresh of the
// balancer's at their default intervals), so that the reports' last flush
// is not measured as part of the next joins-only window.
const (
	ingestRounds = 3
	ingestSettle = 2 * time.Second
)

// window is what one run of the load measured.
type window struct {
	elapsed, cpu time.Duration
	reports      int64
	lat          latencies
}

// merge adds another window's figures to w.
func (w *window) merge(o *window) {
	w.elapsed += o.elapsed
	w.cpu += o.cpu
	w.reports += o.reports
	w.lat.add(o.lat.all)
}

// run sends ingestJoinRate joins a second, and with reports the fleet's
// reports, for d.
func (l *loadGen) run(b *testing.B, d time.Duration, reports bool) *window {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if l.meetings == nil {
		// Each node runs 12 meetings (the balancer placed none of them:
		// they are the set every report carries).
		l.meetings = make([][]string, len(l.names))
		for i, name := range l.names {
			for m := range 12 {
				l.meetings[i] = append(l.meetings[i], fmt.Sprintf("%s-meeting-%02d", name, m))
			}
		}
	}
	reportQ := make(chan int, ingestNodes/int(ingestInterval.Seconds()))
	joinQ := make(chan int, ingestJoinRate)
	var (
		w            window
		sent, failed atomic.Int64
		wg           sync.WaitGroup
	)
	for range 32 {
		wg.Go(func() {
			for i := range reportQ {
				name := l.names[i%len(l.names)]
				body := agentReportBody(name, int64(i/len(l.names)+1), l.meetings[i%len(l.names)])
				if err := postAgentAs(ctx, l.reports, l.e.http.URL+agentapi.PathReport, benchCredential(name), body); err != nil {
					if ctx.Err() == nil {
						failed.Add(1)
					}
					continue
				}
				sent.Add(1)
			}
		})
	}
	for range 16 {
		wg.Go(func() {
			var mine []time.Duration
			defer func() { w.lat.add(mine) }()
			for i := range joinQ {
				t0 := time.Now()
				if err := getOK(l.joins, l.joinURLs[i%len(l.joinURLs)], http.StatusFound); err != nil {
					if ctx.Err() == nil {
						failed.Add(1)
					}
					continue
				}
				mine = append(mine, time.Since(t0))
			}
		})
	}

	cpu, start := cpuTime(), time.Now()
	// Open loop: each tick's work is queued whether or not the last tick's
	// is done, so a slow balancer shows as latency, not as less load; what
	// does not fit in the queues (a second's worth) is dropped and shows as
	// a lower rate.
	tick := time.NewTicker(ingestTick)
	reportsPerTick := int(float64(ingestNodes) / ingestInterval.Seconds() * ingestTick.Seconds())
	joinsPerTick := int(ingestJoinRate * ingestTick.Seconds())
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
		for n := 0; reports && n < reportsPerTick; n++ {
			select {
			case reportQ <- l.nextReport:
				l.nextReport++
			default:
			}
		}
		for range joinsPerTick {
			select {
			case joinQ <- l.nextJoin:
				l.nextJoin++
			default:
			}
		}
	}
	tick.Stop()
	close(reportQ)
	close(joinQ)
	wg.Wait()
	w.elapsed, w.cpu, w.reports = time.Since(start), cpuTime()-cpu, sent.Load()
	if f := failed.Load(); f > 0 {
		b.Errorf("%d requests failed", f)
	}
	return &w
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
