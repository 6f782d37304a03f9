package balancer

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	rtmetrics "runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/balancer/store"
	"github.com/bbb-agent/bbb-agent/bbb"
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
	names, _ := seedFleet(b, e.store, 5*time.Second)
	if err := e.srv.Refresh(ctx); err != nil {
		b.Fatal(err)
	}
	// The reports last: the nodes stay online (three missed reports) while
	// the joins run.
	reportFleet(b, e.http.URL, names)
	joinFleet(b, e.srv.Handler(), e.client)
	if n := len(e.srv.reg.meetings.nodes); n != memMeetings {
		b.Fatalf("the meeting cache holds %d meetings, want %d", n, memMeetings)
	}
	heap, total := goMemory()
	b.ReportMetric(heap-baseHeap, "replica-heap-MiB")
	b.ReportMetric(total, "go-runtime-MiB")
	b.ReportMetric(rssMiB(b), "process-rss-MiB")
	runtime.KeepAlive(e)
}

// seedFleet writes memNodes nodes (reporting every interval) and memMeetings
// placements spread over them straight into the store.
func seedFleet(b *testing.B, st *store.Store, interval time.Duration) (names, ids []string) {
	ctx := b.Context()
	names = make([]string, memNodes)
	ids = make([]string, memNodes)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < memNodes; i += 8 {
				names[i] = fmt.Sprintf("fleet%05d", i)
				n, err := st.UpsertNode(ctx, records.Node{Name: names[i], URL: fmt.Sprintf("https://%s.invalid/bigbluebutton/api/", names[i]),
					Secret: "node-secret-" + names[i], ReportInterval: interval, CreatedAt: time.Now(),
					CredentialHash: credentialHash(benchCredential(names[i]))})
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
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < memMeetings; i += 8 {
				// Placed over the last hours, as a day's meetings are: not
				// all inside the last few report intervals, which would make
				// every refresh re-read them all as pending reservations.
				at := time.Now().Add(-time.Hour - time.Duration(i)*100*time.Millisecond)
				m := records.Meeting{MeetingID: fmt.Sprintf("meeting-%06d", i), NodeID: ids[i%memNodes], PlacedAt: at}
				if _, _, err := st.ClaimMeeting(ctx, m); err != nil {
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
	return names, ids
}

// nodeMeetings are the seeded meetings of the i-th node (seedFleet places
// meeting j on node j % memNodes), as its agent reports them running.
func nodeMeetings(i int) []string {
	var ids []string
	for j := i; j < memMeetings; j += memNodes {
		ids = append(ids, fmt.Sprintf("meeting-%06d", j))
	}
	return ids
}

// reportFleet sends one report of every node to the balancer at url.
func reportFleet(b *testing.B, url string, names []string) {
	client := benchHTTPClient(8)
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < len(names); i += 8 {
				body := agentReportBody(names[i], 1, nodeMeetings(i))
				if err := postAgentAs(b.Context(), client, url+agentapi.PathReport, benchCredential(names[i]), body); err != nil {
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
}

// joinFleet joins every seeded meeting once through h, which wants 302.
func joinFleet(b *testing.B, h http.Handler, c *bbb.Client) {
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < memMeetings; i += 8 {
				req := httptest.NewRequest(http.MethodGet, c.JoinURL(bbb.JoinRequest{MeetingID: fmt.Sprintf("meeting-%06d", i), FullName: "x", Role: bbb.RoleViewer}), nil)
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
}

// httpHandler sends each request to a server over the network.
type httpHandler struct{ c *http.Client }

func (h httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	resp, err := h.c.Get(r.URL.String())
	if err != nil {
		w.WriteHeader(599)
		_, _ = w.Write([]byte(err.Error()))
		return
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
	resp.Body.Close()
}

// BenchmarkMemoryProcess: the RSS of a real bbb-balancer serve process
// (SQLite) holding 10,000 online nodes and 100,000 cached meetings: the
// fleet seeded into its database before it starts, then every node's report
// through its agent API and a join of every meeting through its BBB API.
// Read from /proc/PID/status after the joins, and at its start (the nodes
// loaded, nothing reported or joined yet); after the joins also split into
// its parts (reportRSSParts).
//
// Then the process's own CPU (from /proc/PID/stat, so the load generator
// is not in it) idle and while the fleet reports every 5 s, by POST and
// over each node's report stream (the RSS with the 10,000 streams open;
// the median of three windows, alternating with the floor's), and of that
// the collector's at serve's GOGC (from its /metrics), beside the floors: a
// minimal process receiving the same reports, by POST with net/http and
// over streams. Then the p99 of joins at a steady rate alone
// and while the fleet reports over its streams, and at last the RSS with
// each agent's POST connection open.
func BenchmarkMemoryProcess(b *testing.B) {
	dir := b.TempDir()
	st, err := store.OpenDataDir(b.Context(), dir)
	if err != nil {
		b.Fatal(err)
	}
	names, _ := seedFleet(b, st, time.Minute) // online throughout the joins
	st.Close()
	p := testenv.StartBalancer(b, testenv.BalancerOpts{Secret: lbSecret, AgentToken: agentToken, AdminToken: adminToken, DataDir: dir})
	url := strings.TrimSuffix(p.Ready, "/")
	atStart := procRSS(b, p.Pid()) // the fleet loaded, nothing reported or joined
	reportFleet(b, url, names)
	c, err := bbb.NewClient(url, lbSecret)
	if err != nil {
		b.Fatal(err)
	}
	hc := benchHTTPClient(8)
	defer hc.CloseIdleConnections()
	joinFleet(b, httpHandler{hc}, c)
	b.ReportMetric(procRSS(b, p.Pid()), "bbb-balancer-rss-MiB")
	b.ReportMetric(atStart, "rss-at-start-MiB")
	reportRSSParts(b, p.Pid(), url)
	// Prometheus scrapes /metrics every 15 s or so: 120,000 per-node series
	// at this size. What one costs, and the RSS after three and after nine.
	var (
		scrape time.Duration
		size   int64
	)
	for range 3 {
		t0 := time.Now()
		size = scrapeMetrics(b, url)
		scrape += time.Since(t0)
	}
	b.ReportMetric(float64(size)/(1<<20), "metrics-MiB")
	b.ReportMetric(scrape.Seconds()*1000/3, "metrics-scrape-ms")
	b.ReportMetric(procRSS(b, p.Pid()), "rss-after-3-scrapes-MiB")
	for range 6 {
		scrapeMetrics(b, url)
	}
	b.ReportMetric(procRSS(b, p.Pid()), "rss-after-9-scrapes-MiB")

	// The ingestion cost of the balancer process alone (the load
	// generator's CPU is not in it): every node reports every 5 s, paced,
	// for one window, with nothing else asked of it.
	// First a quiet window: what the process spends with nothing asked.
	cpu0, t0 := procCPU(b, p.Pid()), time.Now()
	time.Sleep(3 * time.Second) // a measuring window, not a wait for a result
	b.ReportMetric((procCPU(b, p.Pid())-cpu0).Seconds()/time.Since(t0).Seconds(), "bbb-balancer-idle-cores")
	// By POST, as agents without the report stream send them (and every
	// agent where a proxy refuses the upgrade).
	cpu0, t0 = procCPU(b, p.Pid()), time.Now()
	paceReports(b, url, names, ingestInterval, ingestWindow, 2)
	postCores := (procCPU(b, p.Pid()) - cpu0).Seconds() / time.Since(t0).Seconds()
	b.ReportMetric(postCores, "bbb-balancer-ingest-post-cores")
	// Over report streams, as bbb-agent sends them: each node its own.
	// (This machine allows a process 20,000 open files: the load
	// generator holds one process's streams at a time.) One window's
	// figure moves by a few hundredths either way on this machine (and
	// moved by a tenth for the window that held the minute's pruning of
	// every node's placements, before registry's shouldPrune pruned only
	// nodes with a placement since), so the balancer's windows alternate
	// with the floor's (a process that only
	// reads each frame and answers a fixed frame), ingestRounds of each
	// (as BenchmarkReportIngestion alternates its windows);
	// the medians are what is reported, every window is logged.
	floor := startMinimalReports(b, false)
	var ingest, ingestFloor, gcCores, kernelCores, allocs, rates []float64
	for round := range ingestRounds {
		streams := openAgentStreams(b, url, names)
		if round == 0 {
			b.ReportMetric(procRSS(b, p.Pid()), "rss-with-10k-agent-streams-MiB")
		}
		gc0 := metricValue(b, url, "go_cpu_classes_gc_total_cpu_seconds_total")
		alloc0 := metricValue(b, url, "go_memstats_alloc_bytes_total")
		cpu0, t0 := procCPU(b, p.Pid()), time.Now()
		sys0 := procSysCPU(b, p.Pid())
		sent := paceStreamReports(b, streams, names, ingestInterval, ingestWindow, int64(100+10*round))
		elapsed := time.Since(t0).Seconds()
		ingest = append(ingest, (procCPU(b, p.Pid())-cpu0).Seconds()/elapsed)
		// The collector's part (the runtime's estimate, a little over), at
		// serve's GOGC (cmd/bbb-balancer/gc.go), and what it has to
		// collect: the bytes allocated a report (the flushes' and the
		// rest of the process's in the window too).
		gcCores = append(gcCores, (metricValue(b, url, "go_cpu_classes_gc_total_cpu_seconds_total")-gc0)/elapsed)
		allocs = append(allocs, (metricValue(b, url, "go_memstats_alloc_bytes_total")-alloc0)/float64(sent))
		// The kernel's part (system time): on loopback, each answer's
		// write also runs the receiving side's TCP path.
		kernelCores = append(kernelCores, (procSysCPU(b, p.Pid())-sys0).Seconds()/elapsed)
		rates = append(rates, float64(sent)/elapsed)
		closeStreams(streams)

		floorStreams := openAgentStreams(b, floor.Ready, names)
		cpu0, t0 = procCPU(b, floor.Pid()), time.Now()
		paceStreamReports(b, floorStreams, names, ingestInterval, ingestWindow, int64(2+10*round))
		ingestFloor = append(ingestFloor, (procCPU(b, floor.Pid())-cpu0).Seconds()/time.Since(t0).Seconds())
		closeStreams(floorStreams)
	}
	b.ReportMetric(median(ingest), "bbb-balancer-ingest-cores")
	b.ReportMetric(median(gcCores), "of-which-gc-cores")
	b.ReportMetric(median(kernelCores), "of-which-kernel-cores")
	b.ReportMetric(median(allocs), "alloc-B/report")
	b.ReportMetric(median(rates), "reports/s")
	b.ReportMetric(median(ingestFloor), "stream-floor-cores")
	b.ReportMetric(median(ingest)-median(ingestFloor), "above-floor-cores")
	b.Logf("ingestion over streams by window, bbb-balancer: %.4f; the floor: %.4f", ingest, ingestFloor)
	// The floor by POST, with net/http: reads each body, answers a fixed
	// report response. What is above it is the balancer's own work.
	cpu0, t0 = procCPU(b, floor.Pid()), time.Now()
	paceReports(b, floor.Ready, names, ingestInterval, ingestWindow, 2)
	floorCores := (procCPU(b, floor.Pid()) - cpu0).Seconds() / time.Since(t0).Seconds()
	b.ReportMetric(floorCores, "net/http-floor-cores")
	b.ReportMetric(postCores-floorCores, "post-above-floor-cores")

	// The BBB API's latency, joins at a steady rate, alone and then while
	// the fleet reports over its streams, in alternating windows (this
	// machine's own noise moves a single window's p99 by half): the p99 of
	// all joins of each kind, and each round's ratio. The floor process
	// takes its turn in each round (a join there only checks the checksum
	// and answers 302): what the machine alone does to the ratio.
	bal, flo := newLatencyRun(url), newLatencyRun(floor.Ready)
	for round := range processJoinRounds {
		bal.round(b, hc, names, int64(1000*(round+1)))
		flo.round(b, hc, names, int64(1000*(round+1)))
	}
	floor.Kill()
	b.ReportMetric(bal.idle.pct(0.99), "join-idle-p99-ms")
	b.ReportMetric(bal.under.pct(0.99), "join-ingest-p99-ms")
	b.ReportMetric(bal.under.pct(0.99)/bal.idle.pct(0.99), "join-p99-ingest/idle")
	b.ReportMetric(flo.under.pct(0.99)/flo.idle.pct(0.99), "floor-join-p99-ingest/idle")
	b.Logf("join p99 under ingestion / idle, by round: %v; the floor's: %v", bal.ratios, flo.ratios)

	// The POST figures above come through a few shared connections. An
	// agent that reports by POST holds a connection of its own open
	// between reports: the RSS with all 10,000 of them open (HTTP/1.1, as
	// bbb-agent speaks to its balancer; BenchmarkReportTransport has the
	// cost of one).
	closeAll := holdAgentConns(b, url, names, 1_000_000, false) // past every seq sent above
	b.ReportMetric(procRSS(b, p.Pid()), "rss-with-10k-post-conns-MiB")
	closeAll()
}

// latencyRun is BenchmarkMemoryProcess's join latency rounds against one
// server: its join URLs, and the latencies and ratios so far.
type latencyRun struct {
	url         string
	joinURLs    []string
	idle, under latencies
	ratios      []float64
}

func newLatencyRun(url string) *latencyRun {
	c, err := bbb.NewClient(url, lbSecret)
	if err != nil {
		panic(err) // the URL came from a ready line
	}
	rng := rand.New(rand.NewPCG(5, 6))
	joinURLs := make([]string, 4096)
	for i := range joinURLs {
		joinURLs[i] = c.JoinURL(bbb.JoinRequest{MeetingID: fmt.Sprintf("meeting-%06d", rng.IntN(memMeetings)), FullName: "x", Role: bbb.RoleViewer})
	}
	return &latencyRun{url: url, joinURLs: joinURLs}
}

// round paces joins for one window alone, then one while the fleet
// reports (seq from firstSeq), then pauses so that the last flush stays
// out of the next quiet window.
func (l *latencyRun) round(b *testing.B, hc *http.Client, names []string, firstSeq int64) {
	streams := openAgentStreams(b, l.url, names) // the fleet connected, quiet
	defer closeStreams(streams)
	quiet := paceJoins(b, hc, l.joinURLs, processJoinRate, processJoinWindow)
	var busy *latencies
	var wg sync.WaitGroup
	wg.Go(func() { paceStreamReports(b, streams, names, ingestInterval, processJoinWindow, firstSeq) })
	wg.Go(func() { busy = paceJoins(b, hc, l.joinURLs, processJoinRate, processJoinWindow) })
	wg.Wait()
	time.Sleep(ingestSettle) // not a wait for a result
	l.ratios = append(l.ratios, math.Round(100*busy.pct(0.99)/quiet.pct(0.99))/100)
	l.idle.add(quiet.all)
	l.under.add(busy.all)
}

// The join load of BenchmarkMemoryProcess's latency windows.
const (
	processJoinRate   = 500 // joins/s
	processJoinWindow = 4 * time.Second
	processJoinRounds = 3
)

// paceJoins sends joins (each wants 302) at rate a second, spread evenly,
// for the window, and returns their latencies.
func paceJoins(b *testing.B, c *http.Client, urls []string, rate int, window time.Duration) *latencies {
	const workers = 8
	each := time.Second * workers / time.Duration(rate)
	deadline := time.Now().Add(window)
	var (
		wg  sync.WaitGroup
		lat latencies
	)
	for w := range workers {
		wg.Go(func() {
			var mine []time.Duration
			defer func() { lat.add(mine) }()
			next := time.Now().Add(time.Duration(w) * each / workers)
			for i := w; time.Now().Before(deadline); i += workers {
				time.Sleep(time.Until(next)) // pacing the load, not waiting for a result
				next = next.Add(each)
				t0 := time.Now()
				if err := getOK(c, urls[i%len(urls)], http.StatusFound); err != nil {
					b.Errorf("join: %v", err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return &lat
}

// paceReports sends every node's report once per interval, spread evenly,
// for the window, from a few connections, with seq from firstSeq on; it
// returns how many it sent.
func paceReports(b *testing.B, url string, names []string, interval, window time.Duration, firstSeq int64) int {
	client := benchHTTPClient(8)
	defer client.CloseIdleConnections()
	return paceReportsOver(b, client, url, names, interval, window, firstSeq)
}

// paceReportsOver is paceReports through client.
func paceReportsOver(b *testing.B, client *http.Client, url string, names []string, interval, window time.Duration, firstSeq int64) int {
	return pace(b, names, interval, window, firstSeq, func(i int, body []byte) error {
		return postAgentAs(b.Context(), client, url+agentapi.PathReport, benchCredential(names[i]), body)
	})
}

// pace sends every node's report (its index and body to send) once per
// interval, spread evenly, for the window, with seq from firstSeq on; it
// returns how many it sent.
func pace(b *testing.B, names []string, interval, window time.Duration, firstSeq int64, send func(i int, body []byte) error) int {
	const workers = 8
	each := interval * workers / time.Duration(len(names)) // one worker's gap between reports
	meetings := make([][]string, len(names))
	for i := range names {
		meetings[i] = nodeMeetings(i)
	}
	deadline := time.Now().Add(window)
	var (
		wg   sync.WaitGroup
		sent atomic.Int64
	)
	for w := range workers {
		wg.Go(func() {
			next := time.Now().Add(time.Duration(w) * each / workers)
			for seq, i := firstSeq, w; time.Now().Before(deadline); i += workers {
				if i >= len(names) {
					i, seq = w, seq+1
				}
				time.Sleep(time.Until(next)) // pacing the load, not waiting for a result
				next = next.Add(each)
				if err := send(i, agentReportBody(names[i], seq, meetings[i])); err != nil {
					b.Errorf("report %s: %v", names[i], err)
					return
				}
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return int(sent.Load())
}

// procCPU is a process's user plus system CPU time (Linux, from
// /proc/PID/stat in clock ticks of 1/100 s).
func procCPU(b *testing.B, pid int) time.Duration {
	user, sys := procTimes(b, pid)
	return user + sys
}

// procSysCPU is a process's system CPU time: what the kernel spent on its
// behalf.
func procSysCPU(b *testing.B, pid int) time.Duration {
	_, sys := procTimes(b, pid)
	return sys
}

// procTimes is a process's user and system CPU time.
func procTimes(b *testing.B, pid int) (user, sys time.Duration) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	// The command name in parentheses may hold spaces: fields count from
	// the last ')'. utime and stime are fields 14 and 15.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(f) < 13 {
		b.Fatalf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return time.Duration(utime) * 10 * time.Millisecond, time.Duration(stime) * 10 * time.Millisecond
}

// procRSS is a process's resident set size in MiB (Linux).
func procRSS(b *testing.B, pid int) float64 { return procStatus(b, pid, "VmRSS") }

// procStatus is a size field of /proc/PID/status (VmRSS, RssAnon,
// RssFile) in MiB.
func procStatus(b *testing.B, pid int, field string) float64 {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// reportRSSParts splits the resident set of the bbb-balancer process pid,
// serving url, into what BenchmarkMemoryProcess's RSS target is made of, in
// MiB: the file pages (the executable's code and read-only data, mapped
// from its file), the memory the Go runtime holds from the OS (its
// /metrics: obtained minus released; the heap, with its collector's
// headroom and the idle spans it keeps, and the runtime's own), and the
// rest of the anonymous memory, SQLite's page caches above all (its pages
// come from modernc's allocator, outside the Go heap).
func reportRSSParts(b *testing.B, pid int, url string) {
	file, anon := procStatus(b, pid, "RssFile"), procStatus(b, pid, "RssAnon")
	var body bytes.Buffer
	scrapeMetricsTo(b, url, &body)
	metric := func(name string) float64 { return metricIn(b, body.String(), name) / (1 << 20) }
	goHeld := metric("go_memstats_sys_bytes") - metric("go_memstats_heap_released_bytes")
	b.ReportMetric(file, "rss-file-pages-MiB")
	b.ReportMetric(goHeld, "rss-go-runtime-MiB")
	b.ReportMetric(metric("go_memstats_heap_inuse_bytes"), "go-heap-inuse-MiB")
	b.ReportMetric(anon-goHeld, "rss-sqlite-and-other-MiB")
}

// metricValue is the value of a series without labels in the balancer's
// /metrics.
func metricValue(b *testing.B, url, name string) float64 {
	var body bytes.Buffer
	scrapeMetricsTo(b, url, &body)
	return metricIn(b, body.String(), name)
}

// metricIn is the value of a series without labels in a /metrics text.
func metricIn(b *testing.B, text, name string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("/metrics: %s: %v", line, err)
			}
			return f
		}
	}
	b.Fatalf("/metrics has no %s", name)
	return 0
}

// scrapeMetrics gets the balancer's /metrics as Prometheus does (the admin
// token, gzip) and returns its size unzipped.
func scrapeMetrics(b *testing.B, url string) int64 { return scrapeMetricsTo(b, url, io.Discard) }

// scrapeMetricsTo is scrapeMetrics, the body written to w.
func scrapeMetricsTo(b *testing.B, url string, w io.Writer) int64 {
	req, err := http.NewRequestWithContext(b.Context(), http.MethodGet, url+"/metrics", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req) // asks for gzip, and unzips
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("/metrics: HTTP %s", resp.Status)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		b.Fatalf("/metrics: %v", err)
	}
	return n
}

// BenchmarkGetMeetingsFleet: a getMeetings call's own cost at 10,000 online
// nodes, every node's part kept (the bound is an hour here; each node's
// .invalid URL fails at once, and a failed part is kept like an answer): the
// fan-out list and the kept answer's assembly, per call, not the nodes'
// answers.
func BenchmarkGetMeetingsFleet(b *testing.B) {
	e := newEnv(b, benchBackends[0].dsn(b), testenv.NewClock())
	e.srv.cfg.Clock = time.Now
	e.srv.cfg.GetMeetingsMaxAge = time.Hour
	names, _ := seedFleet(b, e.store, time.Hour) // online throughout
	if err := e.srv.Refresh(b.Context()); err != nil {
		b.Fatal(err)
	}
	reportFleet(b, e.http.URL, names)
	h, u := e.srv.Handler(), e.client.URL("getMeetings", nil)
	get := func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, u, nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("getMeetings: HTTP %d: %s", rec.Code, rec.Body)
		}
	}
	get() // every node asked once
	b.ReportAllocs()
	for b.Loop() {
		get()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/call")
}

// median is the middle of xs (the mean of the two middle ones when even).
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
