package balancer

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// minimalReportsEnv, set to a listen address, makes this test binary serve
// agent reports minimally instead of running tests (TestMain);
// minimalReportsH2Env, set too, adds unencrypted HTTP/2.
const (
	minimalReportsEnv   = "BBB_BENCH_MINIMAL_REPORTS"
	minimalReportsH2Env = "BBB_BENCH_MINIMAL_REPORTS_H2"
)

// serveMinimalReports is the floor of report ingestion: net/http serving
// the agent API's report path, each body read whole, a fixed report
// response sent; no decoding, no registry, no database. It answers joins
// with minimalJoinHandler.
func serveMinimalReports(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	answer := []byte(`{"state":"active","turn_servers":[]}` + "\n")
	bufs := sync.Pool{New: func() any { return new(bytes.Buffer) }}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+agentapi.PathReport, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			http.Error(w, "no credential", http.StatusUnauthorized)
			return
		}
		buf := bufs.Get().(*bytes.Buffer)
		buf.Reset()
		_, err := buf.ReadFrom(r.Body)
		bufs.Put(buf)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(answer)
	})
	// And report streams, as minimally: a fixed answer to each frame.
	mux.HandleFunc("GET "+agentapi.PathReportStream, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			http.Error(w, "no credential", http.StatusUnauthorized)
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		go serveMinimalStream(conn, answer)
	})
	// And joins, as minimally: BenchmarkMemoryProcess's latency floor.
	mux.Handle("GET /bigbluebutton/api/join", minimalJoinHandler(lbSecret))
	srv := &http.Server{Handler: mux, Protocols: benchProtocols(os.Getenv(minimalReportsH2Env) != "")}
	srv.Protocols.SetHTTP1(true)
	fmt.Printf("listening on http://%s\n", ln.Addr())
	fmt.Fprintln(os.Stderr, srv.Serve(ln))
	os.Exit(1)
}

// serveMinimalStream answers every report frame on conn with answer,
// reading each whole and decoding nothing.
func serveMinimalStream(conn net.Conn, answer []byte) {
	defer conn.Close()
	if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+agentapi.ReportStreamProtocol+"\r\n\r\n"); err != nil {
		return
	}
	frame := make([]byte, agentapi.AnswerFrameHeaderBytes, agentapi.AnswerFrameHeaderBytes+len(answer))
	agentapi.PutAnswerFrameHeader(frame, http.StatusOK, len(answer))
	frame = append(frame, answer...)
	var hdr [agentapi.ReportFrameHeaderBytes]byte
	for {
		n, err := agentapi.ReadReportFrameHeader(conn, &hdr)
		if err != nil || n > agentapi.MaxBodyBytes {
			return
		}
		buf := minimalFrames.Get().(*[]byte)
		_, err = io.ReadFull(conn, (*buf)[:n])
		minimalFrames.Put(buf)
		if err != nil {
			return
		}
		if _, err := conn.Write(frame); err != nil {
			return
		}
	}
}

// minimalFrames are serveMinimalStream's buffers of a frame's body.
var minimalFrames = sync.Pool{New: func() any { b := make([]byte, agentapi.MaxBodyBytes); return &b }}

// startMinimalReports starts this test binary as serveMinimalReports on
// loopback, answering HTTP/1.1, and unencrypted HTTP/2 with h2; its Ready
// is its URL.
func startMinimalReports(b *testing.B, h2 bool) *testenv.Proc {
	env := testenv.CleanEnv(minimalReportsEnv + "=127.0.0.1:0")
	if h2 {
		env = append(env, minimalReportsH2Env+"=1")
	}
	return testenv.Start(b, testenv.Cmd{Name: "minimal report server", Path: os.Args[0], Env: env,
		Ready: regexp.MustCompile(`^listening on (http://\S+)$`)})
}

// benchProtocols is HTTP/1.1 alone, or unencrypted HTTP/2 alone with h2.
func benchProtocols(h2 bool) *http.Protocols {
	p := new(http.Protocols)
	if h2 {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	return p
}

// holdAgentConns sends every node's report (with seq) once, each node
// through a connection of its own (HTTP/2 with h2) as each agent has, and
// leaves them open, as agents do between reports. The returned func closes
// them.
func holdAgentConns(b *testing.B, url string, names []string, seq int64, h2 bool) (closeAll func()) {
	clients := make([]*http.Client, len(names))
	closeAll = func() {
		for _, c := range clients {
			if c != nil {
				c.CloseIdleConnections()
			}
		}
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < len(names); i += 16 {
				c := benchHTTPClient(1)
				c.Transport.(*http.Transport).Protocols = benchProtocols(h2)
				clients[i] = c
				body := agentReportBody(names[i], seq, nodeMeetings(i))
				if err := postAgentAs(b.Context(), c, url+agentapi.PathReport, benchCredential(names[i]), body); err != nil {
					b.Errorf("report %s: %v", names[i], err)
					return
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		closeAll()
		b.FailNow()
	}
	return closeAll
}

// openAgentStreams opens a report stream for every node, each with its
// node's credential, as each agent keeps one open.
func openAgentStreams(b *testing.B, url string, names []string) []*streamClient {
	streams := make([]*streamClient, len(names))
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < len(names); i += 16 {
				resp, s, err := openStream(url, benchCredential(names[i]), true)
				if err == nil && s == nil {
					err = fmt.Errorf("upgrade answered %s", resp.Status)
				}
				if err != nil {
					b.Errorf("stream of %s: %v", names[i], err)
					return
				}
				streams[i] = s
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		closeStreams(streams)
		b.FailNow()
	}
	return streams
}

func closeStreams(streams []*streamClient) {
	for _, s := range streams {
		if s != nil {
			s.conn.Close()
		}
	}
}

// paceStreamReports is paceReports over each node's own report stream.
func paceStreamReports(b *testing.B, streams []*streamClient, names []string, interval, window time.Duration, firstSeq int64) int {
	return pace(b, names, interval, window, firstSeq, func(i int, body []byte) error {
		status, answer, err := streams[i].send(body)
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("HTTP %d: %s", status, answer)
		}
		return err
	})
}

// transportWindow is how long BenchmarkReportTransport paces reports.
const transportWindow = 10 * time.Second

// BenchmarkReportTransport: what an agent's choice of HTTP version costs a
// server of the reports alone (the minimal report server, so nothing of the
// balancer's own work is in it): its CPU at 10,000 nodes reporting every
// 5 s, and its memory per agent connection held open between reports, over
// HTTP/1.1 and over HTTP/2 (unencrypted here; agents of an HTTPS balancer
// would negotiate HTTP/2 unless told not to, and TLS adds its own costs to
// both). bbb-agent speaks HTTP/1.1 to its balancer for these figures.
// And the same over report streams (agentapi.PathReportStream), which
// bbb-agent opens where the balancer takes them.
func BenchmarkReportTransport(b *testing.B) {
	names := make([]string, memNodes)
	for i := range names {
		names[i] = fmt.Sprintf("fleet%05d", i)
	}
	cores := map[bool]float64{}
	for _, h2 := range []bool{false, true} {
		proto := map[bool]string{false: "http1", true: "http2"}[h2]
		srv := startMinimalReports(b, h2)
		client := benchHTTPClient(8)
		client.Transport.(*http.Transport).Protocols = benchProtocols(h2)
		cpu0, t0 := procCPU(b, srv.Pid()), time.Now()
		paceReportsOver(b, client, srv.Ready, names, ingestInterval, transportWindow, 1)
		cores[h2] = (procCPU(b, srv.Pid()) - cpu0).Seconds() / time.Since(t0).Seconds()
		client.CloseIdleConnections()
		b.ReportMetric(cores[h2], proto+"-cores")

		rss0 := procRSS(b, srv.Pid())
		closeAll := holdAgentConns(b, srv.Ready, names, 1, h2)
		b.ReportMetric((procRSS(b, srv.Pid())-rss0)*1024/float64(len(names)), proto+"-KiB/conn")
		closeAll()
		srv.Kill()
	}
	b.ReportMetric(cores[true]/cores[false], "http2/http1-cores")

	// The report stream (agentapi.PathReportStream), as bbb-agent reports:
	// each node's stream of its own, open throughout.
	srv := startMinimalReports(b, false)
	rss0 := procRSS(b, srv.Pid())
	streams := openAgentStreams(b, srv.Ready, names)
	b.ReportMetric((procRSS(b, srv.Pid())-rss0)*1024/float64(len(names)), "stream-KiB/conn")
	cpu0, t0 := procCPU(b, srv.Pid()), time.Now()
	paceStreamReports(b, streams, names, ingestInterval, transportWindow, 1)
	streamCores := (procCPU(b, srv.Pid()) - cpu0).Seconds() / time.Since(t0).Seconds()
	closeStreams(streams)
	srv.Kill()
	b.ReportMetric(streamCores, "stream-cores")
	b.ReportMetric(streamCores/cores[false], "stream/http1-cores")
}
