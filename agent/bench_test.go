package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agent/host"
	"github.com/bbb-agent/bbb-agent/balancer"
	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/balancer/balancertest"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/registrar"
)

// The fleet BenchmarkAgentProcess puts the agent in.
const (
	benchMeetings   = 50
	benchNode       = "bench1"
	benchLBSecret   = "bench-lb-secret-0123456789"
	benchSimSecret  = "bench-sim-secret-0123456789"
	benchAgentToken = "bench-agent-token-0123"
	benchAdminToken = "bench-admin-token-0123"
	// benchWarmCycles are the report cycles after the meetings are in place
	// that the measurement waits out; benchCycles are the cycles it measures.
	benchWarmCycles = 2
	benchCycles     = 6
	// benchReadyWithin bounds each process's start-up under the benchmark's load.
	benchReadyWithin = 15 * time.Second
)

// BenchmarkAgentProcess measures a bbb-agent process as it runs on a node:
// the real binary, reporting to a real bbb-balancer (embedded database) the
// load of a bbb-sim with 50 meetings of 10 to 30 attendees (voice, listen-only
// and webcams mixed) and 15 breakout rooms. After two warm-up cycles it
// reads the whole process's figures over six report cycles:
//
//	cpu-ms/cycle  CPU time (user+system, every thread) per report cycle
//	core-%        that CPU time over the window's wall time, in percent of one core
//	rss-MiB       resident memory at the end of the window (VmRSS)
//	hwm-MiB       the peak resident memory since the start (VmHWM)
//	reports       reports the balancer received in the window
//	B/op          bytes the agent allocated per report cycle (its Go runtime's count)
//	allocs/op     allocations per report cycle
//
// One op is one report cycle; ns/op is left out, the window's length is
// fixed by the interval. The sub-benchmarks run the default 5 s interval and
// a 1 s one, which should cost the same per cycle and five times the share
// of a core. Each measures once, whatever -benchtime asks: later iterations
// report the same figures.
func BenchmarkAgentProcess(b *testing.B) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		b.Skip("no /proc to read a process's CPU time and memory from")
	}
	bins := testenv.Build(b, testenv.AgentPkg, testenv.BalancerPkg, testenv.SimPkg)
	cmds := testenv.Commands{Agent: bins[0], Balancer: bins[1], Sim: bins[2]}
	for _, interval := range []time.Duration{5 * time.Second, time.Second} {
		var figures *processFigures
		b.Run("interval="+interval.String(), func(b *testing.B) {
			if figures == nil {
				figures = measureAgentProcess(b, cmds, interval)
			}
			figures.report(b)
		})
	}
}

// BenchmarkReportCycle is one report cycle of the agent in process, the
// part of BenchmarkAgentProcess's figures that a profile can take apart
// (-cpuprofile, -memprofile): host figures from the live /proc, getMeetings
// of the same 50 meetings, and a report to a bbb-balancer. The getMeetings
// answer is recorded from the simulator once and then served as recorded,
// and the balancer's side of a report is small, so the figures are nearly
// all the agent's.
func BenchmarkReportCycle(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	discard := slog.New(slog.DiscardHandler)
	lb := balancertest.Start(b, balancertest.Options{Run: true, Config: balancer.Config{Secrets: []string{benchLBSecret},
		AgentToken: benchAgentToken, AdminToken: benchAdminToken, Logger: discard}})

	simulator := sim.New(sim.Config{Secret: benchSimSecret, Seed: 1})
	var recorded atomic.Pointer[[]byte]
	simServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if body := recorded.Load(); body != nil && path.Base(r.URL.Path) == bbb.CallGetMeetings {
			w.Header().Set("Content-Type", "text/xml;charset=utf-8")
			w.Write(*body)
			return
		}
		simulator.ServeHTTP(w, r)
	}))
	defer simServer.Close()

	reg, err := registrar.NewBalancer(lb.URL, benchAgentToken)
	if err != nil {
		b.Fatal(err)
	}
	client, err := bbb.NewClient(simServer.URL, benchSimSecret)
	if err != nil {
		b.Fatal(err)
	}
	collector := host.NewCollector(host.Config{DiskPath: b.TempDir()})
	a, err := New(Config{Node: benchNode, ServerURL: simServer.URL, Secret: benchSimSecret, Logger: discard}, Deps{
		Registrar: reg, BBB: client,
		Host: collector.Sample,
	})
	if err != nil {
		b.Fatal(err)
	}
	a.tick(ctx) // registers
	if st := a.Status(); !st.Registered {
		b.Fatalf("not registered: %s", st.LastError)
	}
	users := createBenchMeetings(ctx, b, lb.URL, sim.NewControlClient(simServer.URL, nil))
	resp, err := http.Get(client.URL(bbb.CallGetMeetings, nil))
	if err != nil {
		b.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		b.Fatal(err)
	}
	recorded.Store(&body)
	a.tick(ctx)
	if st := a.Status(); st.Load.Meetings != benchMeetings || st.Load.Participants != users || st.LastError != "" {
		b.Fatalf("the agent measured %d meetings with %d participants, want %d and %d (error: %q)",
			st.Load.Meetings, st.Load.Participants, benchMeetings, users, st.LastError)
	}

	b.ReportAllocs()
	for b.Loop() {
		a.tick(ctx)
	}
	b.ReportMetric(float64(len(body))/1024, "getMeetings-KiB")
}

// processFigures are one measurement window's results.
type processFigures struct {
	cycles                int
	wall                  time.Duration
	cpu                   time.Duration // every thread's run time (schedstat), or utime+stime
	user, system          time.Duration // utime and stime from /proc/PID/stat, in clock ticks
	mem                   benchMemory
	reports               int
	allocBytes, allocs    float64 // during the window, from the agent's metrics
	gcs                   float64
	heapInuse, runtimeSys float64 // at the end of the window
	threads               int
}

func (f *processFigures) report(b *testing.B) {
	perCycle := func(v float64) float64 { return v / float64(f.cycles) }
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(f.mem.rss)/1024, "rss-MiB")
	b.ReportMetric(float64(f.mem.hwm)/1024, "hwm-MiB")
	b.ReportMetric(perCycle(float64(f.cpu)/float64(time.Millisecond)), "cpu-ms/cycle")
	b.ReportMetric(100*f.cpu.Seconds()/f.wall.Seconds(), "core-%")
	b.ReportMetric(float64(f.reports), "reports")
	b.ReportMetric(perCycle(f.allocBytes), "B/op")
	b.ReportMetric(perCycle(f.allocs), "allocs/op")
}

func (f *processFigures) String() string {
	return fmt.Sprintf("%d cycles in %v: CPU %v (utime %v + stime %v), %.2f GC/cycle; RSS %.1f MiB (peak %.1f; anonymous %.1f, file %.1f), Go heap in use %.1f MiB of %.1f MiB from the OS, %d threads",
		f.cycles, f.wall.Round(time.Millisecond), f.cpu.Round(10*time.Microsecond), f.user, f.system, f.gcs/float64(f.cycles),
		float64(f.mem.rss)/1024, float64(f.mem.hwm)/1024, float64(f.mem.anon)/1024, float64(f.mem.file)/1024, f.heapInuse/(1<<20), f.runtimeSys/(1<<20), f.threads)
}

// measureAgentProcess starts a balancer, a simulator with the meetings and an
// agent reporting every interval, and measures the agent's process.
func measureAgentProcess(b *testing.B, bins testenv.Commands, interval time.Duration) *processFigures {
	b.Helper()
	dir := b.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)

	lb := testenv.StartBalancer(b, testenv.BalancerOpts{Bin: bins.Balancer, Secret: benchLBSecret, AgentToken: benchAgentToken,
		AdminToken: benchAdminToken, DataDir: filepath.Join(dir, "balancer"), ReadyWithin: benchReadyWithin})
	simProc := testenv.StartSim(b, testenv.SimOpts{Bin: bins.Sim, Secret: benchSimSecret,
		Args: []string{"--seed", "1", "--log-level", "warn"}, ReadyWithin: benchReadyWithin})
	metricsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(b)))
	socket := filepath.Join(dir, "admin.sock")
	config := filepath.Join(dir, "agent.yaml") // empty: nothing from /etc/bbb-agent
	recordings := filepath.Join(dir, "recordings")
	for _, err := range []error{os.WriteFile(config, nil, 0o644), os.Mkdir(recordings, 0o755)} {
		if err != nil {
			b.Fatal(err)
		}
	}
	agent := testenv.StartAgent(b, testenv.AgentOpts{Bin: bins.Agent, ReadyWithin: benchReadyWithin, Args: []string{"run",
		"--config", config, "--balancer-url", lb.Ready, "--agent-token", benchAgentToken,
		"--bbb-url", simProc.Ready, "--bbb-secret", benchSimSecret, "--node-name", benchNode,
		"--state-dir", filepath.Join(dir, "state"), "--admin-socket", socket,
		"--report-interval", interval.String(), "--logind=false", "--host-root", "/",
		"--recordings-dir", recordings, "--metrics-listen", metricsAddr}})

	// Registered: what `bbb-agent status --json` shows.
	admin := NewAdminClient(socket)
	waitBench(b, agent, "the agent registered and ready", 15*time.Second, 50*time.Millisecond, func() (bool, error) {
		st, err := admin.Status(ctx)
		if err != nil {
			return false, nil // not listening yet
		}
		return st.Registered && st.State == Ready, nil
	})

	simControl := sim.NewControlClient(simProc.Ready, nil)
	users := createBenchMeetings(ctx, b, lb.Ready, simControl)

	lbAdmin, err := adminapi.NewClient(lb.Ready, benchAdminToken)
	if err != nil {
		b.Fatal(err)
	}
	reports := &reportWatch{admin: lbAdmin, interval: interval, poll: min(interval/50, 100*time.Millisecond)}
	// Warm up: cycles that saw every meeting. The window starts just after a
	// report and ends halfway between two, with the agent idle at both ends.
	last := time.Now()
	for range benchWarmCycles {
		last = reports.next(ctx, b, agent, last)
	}

	pid := agent.Pid()
	alloc0 := scrapeGoMetrics(ctx, b, metricsAddr)
	sims0 := simGetMeetings(ctx, b, simControl)
	user0, sys0 := processStatCPU(b, pid)
	cpu0, start := processCPU(b, pid), time.Now()
	seen := reports.count(ctx, b, agent, last, start.Add(benchCycles*interval+interval/2))
	cpu1, end := processCPU(b, pid), time.Now()
	user1, sys1 := processStatCPU(b, pid)
	mem := processMemory(b, pid)
	alloc1 := scrapeGoMetrics(ctx, b, metricsAddr)
	sims1 := simGetMeetings(ctx, b, simControl)

	if seen != benchCycles {
		b.Errorf("the balancer received %d reports in %v, want %d", seen, end.Sub(start).Round(time.Millisecond), benchCycles)
	}
	if got := sims1 - sims0; got != int64(seen) {
		b.Errorf("the simulator answered %d getMeetings in a window of %d reports: cycles without a report (retries?)", got, seen)
	}
	srv, err := lbAdmin.Server(ctx, benchNode)
	if err != nil {
		b.Fatal(err)
	}
	if srv.Meetings != benchMeetings || srv.Users != users || !srv.Online {
		b.Fatalf("the balancer shows %s online=%v with %d meetings and %d users, want %d and %d",
			benchNode, srv.Online, srv.Meetings, srv.Users, benchMeetings, users)
	}
	f := &processFigures{
		cycles: max(seen, 1), wall: end.Sub(start), cpu: cpu1 - cpu0, user: user1 - user0, system: sys1 - sys0,
		mem: mem, reports: seen,
		allocBytes: alloc1["go_memstats_alloc_bytes_total"] - alloc0["go_memstats_alloc_bytes_total"],
		allocs:     alloc1["go_memstats_mallocs_total"] - alloc0["go_memstats_mallocs_total"],
		gcs:        alloc1["go_gc_duration_seconds_count"] - alloc0["go_gc_duration_seconds_count"],
		heapInuse:  alloc1["go_memstats_heap_inuse_bytes"], runtimeSys: alloc1["go_memstats_sys_bytes"],
		threads: int(alloc1["go_threads"]),
	}
	b.Logf("interval %v, %d meetings with %d users: %v", interval, srv.Meetings, srv.Users, f)
	return f
}

// createBenchMeetings creates the meetings through the balancer, which places
// them on the only node, and fills them through the simulator's control API.
// It returns the participants the agent should report.
func createBenchMeetings(ctx context.Context, b *testing.B, lbURL string, simControl *sim.ControlClient) int {
	b.Helper()
	front, err := bbb.NewClient(lbURL, benchLBSecret)
	if err != nil {
		b.Fatal(err)
	}
	users := 0
	for i := range benchMeetings {
		id := fmt.Sprintf("bench-meeting-%02d", i)
		if _, err := front.Create(ctx, bbb.CreateRequest{MeetingID: id, Name: fmt.Sprintf("Course %d", i), Record: i%3 == 0,
			Meta: map[string]string{"bbb-context": "bench"}}); err != nil {
			b.Fatalf("create %s: %v", id, err)
		}
		// 10 to 30 people: a moderator on camera, a fifth on camera, a fifth
		// on the microphone, half of the rest listening only.
		n := 10 + i*7%21
		video, voice := n/5, n/5
		listen := (n - 1 - video - voice) / 2
		specs := []sim.AttendeeSpec{
			{Count: 1, Role: bbb.RoleModerator, Voice: true, Video: true},
			{Count: video, Voice: true, Video: true},
			{Count: voice, Voice: true},
			{Count: listen, ListenOnly: true},
			{Count: n - 1 - video - voice - listen},
		}
		for _, s := range specs {
			if s.Count > 0 {
				if _, err := simControl.AddAttendees(ctx, id, s); err != nil {
					b.Fatal(err)
				}
			}
		}
		users += n
		if i%10 == 0 {
			if _, err := simControl.AddBreakouts(ctx, id, sim.BreakoutSpec{Rooms: 3, AttendeesPerRoom: 4}); err != nil {
				b.Fatal(err)
			}
		}
	}
	return users
}

// simGetMeetings is how many getMeetings the simulator has answered.
func simGetMeetings(ctx context.Context, b *testing.B, simControl *sim.ControlClient) int64 {
	b.Helper()
	st, err := simControl.State(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return st.Requests[bbb.CallGetMeetings]
}

// reportWatch sees the agent's reports arrive at the balancer. It asks the
// balancer, not the agent, so that watching costs the agent nothing.
type reportWatch struct {
	admin    *adminapi.Client
	interval time.Duration
	poll     time.Duration
}

// lastReport is when the balancer received the node's last report.
func (w *reportWatch) lastReport(ctx context.Context) (time.Time, error) {
	asked := time.Now()
	srv, err := w.admin.Server(ctx, benchNode)
	if err != nil || srv.LastReportAgeSeconds == nil {
		return time.Time{}, err
	}
	return asked.Add(-time.Duration(*srv.LastReportAgeSeconds * float64(time.Second))), nil
}

// isNew says whether the report received at at is a later one than the
// report received at last. Both times are derived from the balancer's
// report age, so the same report's time varies by a round trip.
func (w *reportWatch) isNew(at, last time.Time) bool { return at.After(last.Add(w.interval / 4)) }

// next waits for the first report received after last and returns when it
// was received.
func (w *reportWatch) next(ctx context.Context, b *testing.B, agent *testenv.Proc, last time.Time) time.Time {
	b.Helper()
	var at time.Time
	waitBench(b, agent, "a report after "+last.Format(time.StampMilli), 2*w.interval+5*time.Second, w.poll, func() (bool, error) {
		var err error
		at, err = w.lastReport(ctx)
		return w.isNew(at, last), err
	})
	return at
}

// count counts the reports received after last until the time until.
func (w *reportWatch) count(ctx context.Context, b *testing.B, agent *testenv.Proc, last, until time.Time) int {
	b.Helper()
	n := 0
	waitBench(b, agent, "the end of the window", time.Until(until)+5*time.Second, w.poll, func() (bool, error) {
		at, err := w.lastReport(ctx)
		if err != nil {
			return false, err
		}
		if w.isNew(at, last) {
			n, last = n+1, at
		}
		return !time.Now().Before(until), nil
	})
	return n
}

// waitBench polls cond every poll until it holds, fails, the process exits
// or within passes.
func waitBench(b *testing.B, p *testenv.Proc, what string, within, poll time.Duration, cond func() (bool, error)) {
	b.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, err := cond()
		switch {
		case err != nil:
			b.Fatalf("waiting for %s: %v", what, err)
		case ok:
			return
		case time.Now().After(deadline):
			b.Fatalf("%s: not within %v\n%s output:\n%s", what, within, p.Name, p.Output())
		}
		select {
		case <-p.Exited():
			b.Fatalf("%s exited (code %d) while waiting for %s\n%s", p.Name, p.Wait(b, time.Second), what, p.Output())
		case <-time.After(poll):
		}
	}
}

// scrapeGoMetrics reads the agent's Prometheus metrics without labels.
func scrapeGoMetrics(ctx context.Context, b *testing.B, addr string) map[string]float64 {
	b.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatalf("the agent's metrics: %v", err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			m[name] = v
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatalf("the agent's metrics: %v", err)
	}
	for _, name := range []string{"go_memstats_alloc_bytes_total", "go_memstats_mallocs_total", "go_gc_duration_seconds_count"} {
		if _, ok := m[name]; !ok {
			b.Fatalf("the agent's metrics lack %s", name)
		}
	}
	return m
}

// processCPU is the CPU time of every thread of process pid, summed from
// /proc/PID/task/*/schedstat (nanoseconds), or from /proc/PID/stat (clock
// ticks) where the kernel has no schedstat.
func processCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if errors.Is(err, os.ErrNotExist) && total == 0 {
			user, system := processStatCPU(b, pid)
			return user + system
		}
		if err != nil {
			continue // the thread has exited
		}
		fields := strings.Fields(string(data))
		if len(fields) == 0 {
			b.Fatalf("schedstat of thread %s: %q", t.Name(), data)
		}
		ns, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			b.Fatalf("schedstat of thread %s: %v", t.Name(), err)
		}
		total += time.Duration(ns)
	}
	return total
}

// processStatCPU is utime and stime of process pid, from /proc/PID/stat.
func processStatCPU(b *testing.B, pid int) (user, system time.Duration) {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name, in parentheses, may hold spaces: count fields after it.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		b.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is the state (field 3); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	var times [2]time.Duration
	for j, f := range fields[11:13] {
		ticks, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			b.Fatalf("/proc/%d/stat: %v", pid, err)
		}
		times[j] = time.Duration(ticks) * time.Second / time.Duration(clockTicks())
	}
	return times[0], times[1]
}

// clockTicks is the kernel's USER_HZ, from the auxiliary vector
// (sysconf(_SC_CLK_TCK) without cgo); 100 if it says nothing.
var clockTicks = sync.OnceValue(func() int64 {
	const atClkTck = 17
	data, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 100
	}
	for ; len(data) >= 16; data = data[16:] {
		if binary.NativeEndian.Uint64(data) == atClkTck {
			if hz := int64(binary.NativeEndian.Uint64(data[8:])); hz > 0 {
				return hz
			}
		}
	}
	return 100
})

// benchMemory is a process's resident memory from /proc/PID/status, in KiB.
type benchMemory struct {
	rss, hwm   int64 // VmRSS, VmHWM
	anon, file int64 // RssAnon, RssFile: the heap and stacks; the binary's mapped pages
}

func processMemory(b *testing.B, pid int) benchMemory {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	var m benchMemory
	for line := range strings.Lines(string(data)) {
		key, value, _ := strings.Cut(line, ":")
		dst := map[string]*int64{"VmRSS": &m.rss, "VmHWM": &m.hwm, "RssAnon": &m.anon, "RssFile": &m.file}[key]
		if dst == nil {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			b.Fatalf("/proc/%d/status %s: %v", pid, key, err)
		}
		*dst = kib
	}
	if m.rss == 0 || m.hwm == 0 {
		b.Fatalf("/proc/%d/status has no VmRSS or VmHWM", pid)
	}
	return m
}
