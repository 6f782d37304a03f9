package balancer

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
)

// The round-2 benchmarks measure in fixed wall-clock windows, so that one
// run prints figures to compare (ratios): each ignores b.N.

const benchWindow = 3 * time.Second

// measureWindow sends url(i) with clients concurrent keep-alive clients for d and
// returns requests/s and the p99 latency.
func measureWindow(b *testing.B, d time.Duration, clients int, url func(i int) string, want int) (float64, time.Duration) {
	client := benchHTTPClient(clients)
	defer client.CloseIdleConnections()
	var (
		next atomic.Int64
		lat  latencies
		wg   sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for range clients {
		wg.Go(func() {
			var mine []time.Duration
			defer func() { lat.add(mine) }()
			for time.Now().Before(deadline) {
				i := int(next.Add(1)) - 1
				t0 := time.Now()
				if err := fetchOK(client, url(i), want); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(lat.all) == 0 {
		return 0, 0
	}
	slices.Sort(lat.all)
	return float64(len(lat.all)) / elapsed.Seconds(), lat.all[min(len(lat.all)-1, len(lat.all)*99/100)]
}

// bodyBufs are the load generator's read buffers: like wrk, it reads each
// answer into memory it already has (a 240 KB getMeetings answer read with
// io.ReadAll costs the client more than the balancer's kept answer).
var bodyBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// fetchOK is getOK reading into a pooled buffer.
func fetchOK(c *http.Client, url string, want int) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	buf := bodyBufs.Get().(*bytes.Buffer)
	defer bodyBufs.Put(buf)
	buf.Reset()
	_, err = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	body := buf.Bytes()
	switch {
	case err != nil:
		return err
	case resp.StatusCode != want:
		return fmt.Errorf("HTTP %d, want %d: %s", resp.StatusCode, want, body)
	case want == http.StatusOK && !bytes.Contains(body[:min(len(body), 512)], []byte("<returncode>SUCCESS</returncode>")):
		return fmt.Errorf("not SUCCESS: %.512s", body)
	}
	return nil
}

// minimalJoinHandler is the ceiling a join is measured against: it parses
// the query, checks a sha256 checksum and answers 302, nothing else.
func minimalJoinHandler(secret string) http.Handler {
	v := bbb.Verifier{Secrets: []string{secret}, Allowed: []bbb.Algorithm{bbb.SHA256}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := v.Verify("join", r.URL.RawQuery)
		if err != nil {
			http.Error(w, "checksum", http.StatusBadRequest)
			return
		}
		params, err := url.ParseQuery(q)
		if err != nil || params.Get("meetingID") == "" {
			http.Error(w, "query", http.StatusBadRequest)
			return
		}
		http.Redirect(w, r, "http://node.invalid/bigbluebutton/api/join?"+q, http.StatusFound)
	})
}

// BenchmarkJoinRatio: join req/s of the minimal in-process handler, of the
// balancer on SQLite and on PostgreSQL (the meeting -> node cache, no
// database read per join), and their ratios, in one run: five alternating
// rounds of a 1 s window each (the order rotating), the median of each kept,
// so that the load of the machine weighs on all three alike. Every round's
// figures are logged.
func BenchmarkJoinRatio(b *testing.B) {
	joinURLs := func(c *bbb.Client) func(i int) string {
		urls := make([]string, 4096)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range urls {
			urls[i] = c.JoinURL(bbb.JoinRequest{MeetingID: fmt.Sprintf("bench-%04d", rng.IntN(benchMeetings)),
				FullName: fmt.Sprintf("User %d", i), Role: bbb.RoleViewer})
		}
		return func(i int) string { return urls[i%len(urls)] }
	}
	ts := httptest.NewServer(minimalJoinHandler(lbSecret))
	defer ts.Close()
	mc, err := bbb.NewClient(ts.URL, lbSecret, bbb.WithAlgorithm(bbb.SHA256))
	if err != nil {
		b.Fatal(err)
	}
	names := []string{"minimal"}
	targets := []func(i int) string{joinURLs(mc)}
	for _, be := range benchBackends {
		e := newBenchEnv(b, be.dsn(b))
		e.createBenchMeetings(b)
		c, err := bbb.NewClient(e.http.URL, lbSecret, bbb.WithAlgorithm(bbb.SHA256))
		if err != nil {
			b.Fatal(err)
		}
		names = append(names, be.name)
		targets = append(targets, joinURLs(c))
	}
	const rounds = 5
	rps := make([][]float64, len(targets))
	b.ResetTimer()
	for round := range rounds {
		// Each round starts with the next target, so that none is always
		// measured first (after the idle setup) or after the same other.
		for j := range targets {
			i := (round + j) % len(targets)
			r, _ := measureWindow(b, time.Second, benchClients, targets[i], http.StatusFound)
			rps[i] = append(rps[i], r)
		}
	}
	b.StopTimer()
	for i := range rps {
		b.Logf("%s join req/s by round: %.0f", names[i], rps[i])
	}
	median := make([]float64, len(rps))
	for i := range rps {
		sorted := slices.Sorted(slices.Values(rps[i]))
		median[i] = sorted[rounds/2]
		b.ReportMetric(median[i], names[i]+"-req/s")
	}
	for i := 1; i < len(names); i++ {
		b.ReportMetric(median[i]/median[0], names[i]+"/minimal")
		perRound := make([]float64, rounds)
		for r := range rounds {
			perRound[r] = rps[i][r] / rps[0][r]
		}
		b.Logf("%s/minimal by round: %.2f", names[i], perRound)
	}
}

// BenchmarkGetMeetingsKept: getMeetings of 300 meetings on 3 bbb-sim nodes,
// with each node's answer kept for the default bound and with that path
// disabled (every call asks every node), in one run.
func BenchmarkGetMeetingsKept(b *testing.B) {
	e := newBenchEnvNodes(b, benchBackends[0].dsn(b), 3)
	for i := range 300 {
		if _, err := e.client.Create(b.Context(), bbb.CreateRequest{MeetingID: fmt.Sprintf("list-%04d", i), Name: "Bench"}); err != nil {
			b.Fatal(err)
		}
	}
	u := e.client.URL(bbb.CallGetMeetings, nil)
	get := func(int) string { return u }
	b.ResetTimer()
	e.srv.cfg.GetMeetingsMaxAge = DefaultGetMeetingsMaxAge
	kept, keptP99 := measureWindow(b, benchWindow, benchClients, get, http.StatusOK)
	e.srv.cfg.GetMeetingsMaxAge = -1 // no request in flight between windows
	live, liveP99 := measureWindow(b, benchWindow, benchClients, get, http.StatusOK)
	b.ReportMetric(kept, "kept-req/s")
	b.ReportMetric(float64(keptP99.Microseconds())/1000, "kept-p99-ms")
	b.ReportMetric(live, "live-req/s")
	b.ReportMetric(float64(liveP99.Microseconds())/1000, "live-p99-ms")
	b.ReportMetric(kept/live, "kept/live")
}

// rssMiB is this process's resident set size in MiB (Linux).
func rssMiB(b *testing.B) float64 { return procRSS(b, os.Getpid()) }
