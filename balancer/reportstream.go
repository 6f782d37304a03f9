package balancer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/prometheus/client_golang/prometheus"
)

// The report stream (agentapi.PathReportStream): an agent's reports over a
// connection of its own, each served exactly as POST agentapi.PathReport
// is. At 10,000 nodes reporting every 5 s, net/http's exchange of each
// report cost this machine 0.16-0.20 of a core before the balancer did
// anything with the report; a frame on the stream costs 0.6 to 0.7 of that,
// and 5 KiB per open stream instead of 19 per held connection
// (BenchmarkMemoryProcess, BenchmarkReportTransport).
const (
	// streamIdleMin bounds the wait for an agent's next report: a stream
	// that stays quiet longer (and three report intervals) is closed. The
	// agent opens a new one, or reports by POST. Half of it bounds a frame
	// cut short and an answer the agent does not read.
	streamIdleMin = 2 * time.Minute
	// streamUpgradeTimeout bounds the write of the upgrade's answer.
	streamUpgradeTimeout = 10 * time.Second
)

// reportStreams are the open report streams, closed and waited for when
// the replica stops (Run), before its last flush: the reports they served
// are in it.
type reportStreams struct {
	ctx    context.Context // the streams' reports'; ended by closeAll
	cancel context.CancelFunc
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	// serve serves one report (POST agentapi.PathReport's handler).
	serve       http.HandlerFunc
	streamsDone sync.WaitGroup
	workers     sync.WaitGroup
	stopOnce    sync.Once
	// jobs are the reports waiting for a worker (work), which the
	// streams start at their first report and closeAll stops.
	jobs         chan *streamReport
	startWorkers sync.Once
}

// streamWorkers is how many workers serve the streams' reports that are
// not the usual ones (reportInline): refusals, and cordoned or leaving
// nodes' reports, which may wait on the database (a busy worker's report
// takes a goroutine of its own).
const streamWorkers = 4

func newReportStreams(serve http.HandlerFunc) *reportStreams {
	ctx, cancel := context.WithCancel(context.Background())
	return &reportStreams{ctx: ctx, cancel: cancel, serve: serve, conns: map[net.Conn]struct{}{}, jobs: make(chan *streamReport)}
}

// work runs a stream's report on an idle worker, or on a goroutine of its
// own when every worker is busy (the report may wait on the database).
func (rs *reportStreams) work(sr *streamReport) {
	rs.startWorkers.Do(func() {
		for range streamWorkers {
			rs.workers.Go(func() {
				for sr := range rs.jobs {
					sr.answer()
				}
			})
		}
	})
	select {
	case rs.jobs <- sr:
	default:
		go sr.answer()
	}
}

// add takes a stream in, unless the replica is stopping.
func (rs *reportStreams) add(c net.Conn) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.closed {
		return false
	}
	rs.conns[c] = struct{}{}
	rs.streamsDone.Add(1)
	return true
}

// done closes a stream that ended and lets it go.
func (rs *reportStreams) done(c net.Conn) {
	c.Close()
	rs.mu.Lock()
	delete(rs.conns, c)
	rs.mu.Unlock()
	rs.streamsDone.Done()
}

// accepting says whether the replica takes new streams.
func (rs *reportStreams) accepting() bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return !rs.closed
}

// open is how many streams are open.
func (rs *reportStreams) open() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.conns)
}

// closeAll closes every stream, takes no new one, and waits for the
// reports under way to be served. It may be called more than once.
func (rs *reportStreams) closeAll() {
	rs.stopOnce.Do(func() {
		rs.mu.Lock()
		rs.closed = true
		for c := range rs.conns {
			c.Close()
		}
		rs.mu.Unlock()
		rs.cancel()
		rs.streamsDone.Wait()         // each waits for its report's answer
		rs.startWorkers.Do(func() {}) // none start after this
		close(rs.jobs)
		rs.workers.Wait()
	})
}

// agentReportStream upgrades an agent's connection to a report stream. The
// caller's credential was checked (agentAuth); it is checked again on every
// report, as POST agentapi.PathReport does.
func (s *Server) agentReportStream(w http.ResponseWriter, r *http.Request, c caller) {
	if r.ProtoMajor != 1 || !headerHasToken(r.Header, "Connection", "upgrade") ||
		!headerHasToken(r.Header, "Upgrade", agentapi.ReportStreamProtocol) {
		// HTTP/2 cannot upgrade; a proxy that drops the upgrade headers
		// lands here too. The agent reports by POST.
		w.Header().Set("Upgrade", agentapi.ReportStreamProtocol)
		w.Header().Set("Connection", "Upgrade")
		s.agentRefused(w, http.StatusUpgradeRequired, agentapi.CodeBadRequest,
			"the report stream needs an HTTP/1.1 upgrade to "+agentapi.ReportStreamProtocol+
				" (Connection: Upgrade); a proxy in front of the balancer must pass upgrades on "+agentapi.PathReportStream+"; report by POST "+agentapi.PathReport+" meanwhile")
		return
	}
	if !s.streams.accepting() {
		s.agentRefused(w, http.StatusServiceUnavailable, agentapi.CodeInternal, "this replica is stopping; report by POST "+agentapi.PathReport)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.agentRefused(w, http.StatusInternalServerError, agentapi.CodeInternal, "the report stream cannot take this connection over: "+err.Error()+"; report by POST "+agentapi.PathReport)
		return
	}
	// Bytes the agent sent after its request are the stream's first.
	var rd io.Reader = conn
	if n := rw.Reader.Buffered(); n > 0 {
		early, _ := rw.Reader.Peek(n)
		rd = io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn)
	}
	if !s.streams.add(conn) {
		conn.Close() // stopping
		return
	}
	_ = conn.SetWriteDeadline(time.Now().Add(streamUpgradeTimeout))
	if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+agentapi.ReportStreamProtocol+"\r\n\r\n"); err != nil {
		s.streams.done(conn)
		return
	}
	idle := streamIdleMin
	if !c.bootstrap && 3*c.node.ReportInterval > idle {
		idle = 3 * c.node.ReportInterval
	}
	// Only what the reports need of the upgrade: the connection's buffers
	// and the request go with this handler, which returns now. The
	// credential is a copy, not a share of the request's header block;
	// each report's request gets the header of its pooled streamReport.
	base := (&http.Request{
		Method: http.MethodPost, URL: reportURL, RequestURI: agentapi.PathReport,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: r.Host, RemoteAddr: r.RemoteAddr,
	}).WithContext(s.streams.ctx)
	go s.serveReportStream(conn, rd, base, agentapi.CloneStrings(r.Header.Values("Authorization")), idle)
}

// reportURL is the URL of every streamed report's request: handlers read
// it, none changes it.
var reportURL = &url.URL{Path: agentapi.PathReport}

// serveReportStream serves the reports of one stream until it ends: the
// agent closes it, sends something that is not a frame, stays quiet longer
// than idle, or the replica stops.
//
// It serves the usual report itself (reportInline), on a stack that stays
// small: 10,000 of them parked in a read cost the collector little. Every
// other report is served as POST serves it (agentReport) by one of the
// streams' workers (work) while it waits: served here, the whole handler
// grew each stream's stack for every report and the collector shrank it
// again between reports, 0.08 of a core at 10,000 nodes.
func (s *Server) serveReportStream(conn net.Conn, rd io.Reader, base *http.Request, authorization []string, idle time.Duration) {
	defer s.streams.done(conn)
	defer func() {
		// As a worker's (answer) and net/http's: a bug in one report
		// ends its stream, not the replica.
		if p := recover(); p != nil {
			s.log.Error("report stream: serving a report panicked; the stream is closed", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	var (
		hdr      [agentapi.ReportFrameHeaderBytes]byte
		answered = make(chan bool, 1)
		deadline time.Time
	)
	hash, inline := s.streamCredential(authorization)
	for {
		// One deadline for reads and writes, moved on only once half of
		// it has passed: each move is a change to the runtime's timers,
		// and 2,000 reports a second would make three each otherwise.
		if now := time.Now(); deadline.Sub(now) < idle/2 {
			deadline = now.Add(idle)
			_ = conn.SetDeadline(deadline)
		}
		n, err := agentapi.ReadReportFrameHeader(rd, &hdr)
		if err != nil {
			return // closed, quiet too long, or cut
		}
		sr := getStreamReport(s, conn, answered)
		if n > agentapi.MaxBodyBytes {
			// The stream cannot be trusted to be in step any more.
			sr.refused = fmt.Sprintf("a report frame of %d bytes, larger than the agent API's limit of %d KiB; the stream is closed", n, agentapi.MaxBodyBytes>>10)
			s.streams.work(sr)
			<-answered
			return
		}
		sr.body = slices.Grow(sr.body[:0], int(n))[:n]
		if _, err := io.ReadFull(rd, sr.body); err != nil {
			putStreamReport(sr)
			return // cut in the middle of a frame
		}
		if inline && s.reportInline(sr, &hash) {
			_, err := conn.Write(sr.fw.frame())
			putStreamReport(sr)
			if err != nil {
				return
			}
			continue
		}
		sr.req = *base
		sr.req.ContentLength = int64(n)
		sr.header["Authorization"] = authorization // empty from the pool
		sr.req.Header = sr.header
		s.streams.work(sr)
		if !<-answered {
			return
		}
	}
}

// streamReport is one report of a stream on its way through a worker: its
// frame's body, the request it is served as, and its answer. They are
// pooled (getStreamReport): a stream holds none while it waits for its
// agent's next report, and a report allocates none of them.
type streamReport struct {
	s        *Server
	conn     net.Conn
	answered chan<- bool // says whether the answer went
	body     []byte      // the frame's
	req      http.Request
	header   http.Header // req's
	reader   frameBody
	fw       frameWriter
	// report and turn are reportInline's: the decoded report (its
	// strings share body) and the TURN servers of its answer, here to
	// keep them off the stream's stack.
	report agentapi.ReportRequest
	turn   [8]agentapi.TURNServer
	// refused, when set, is the answer's bad-request message: the frame
	// is not served.
	refused string
}

var streamReports = sync.Pool{New: func() any { return &streamReport{header: http.Header{}, fw: frameWriter{header: http.Header{}}} }}

func getStreamReport(s *Server, conn net.Conn, answered chan<- bool) *streamReport {
	sr := streamReports.Get().(*streamReport)
	sr.s, sr.conn, sr.answered = s, conn, answered
	return sr
}

// putStreamReport lets sr go back to the pool, holding nothing of its
// stream, unless its buffers grew past a report's usual size.
func putStreamReport(sr *streamReport) {
	if cap(sr.body) > agentBodyKeep || cap(sr.fw.buf) > agentBodyKeep {
		return
	}
	sr.s, sr.conn, sr.answered, sr.refused = nil, nil, nil, ""
	sr.req, sr.report = http.Request{}, agentapi.ReportRequest{}
	clear(sr.turn[:])
	clear(sr.header)
	sr.reader.Reset(nil)
	streamReports.Put(sr)
}

// answer serves the report and sends its answer on the stream, and then
// says on answered whether it went. A panic in the handler is logged and
// ends the stream, as net/http ends a connection whose handler panicked.
func (sr *streamReport) answer() {
	sent, answered := false, sr.answered
	defer func() {
		if p := recover(); p != nil {
			sr.s.log.Error("report stream: a report's handler panicked; the stream is closed", "panic", p, "stack", string(debug.Stack()))
		} else {
			putStreamReport(sr) // not one a handler left halfway
		}
		answered <- sent
	}()
	sr.fw.reset()
	if sr.refused != "" {
		sr.s.agentBadRequest(&sr.fw, "body", sr.refused)
	} else {
		sr.reader.Reset(sr.body)
		sr.req.Body = &sr.reader
		sr.s.streams.serve(&sr.fw, &sr.req)
	}
	_, err := sr.conn.Write(sr.fw.frame())
	sent = err == nil
}

// frameBody is a report's body as its request reads it.
type frameBody struct{ bytes.Reader }

func (*frameBody) Close() error { return nil }

// frameWriter is the http.ResponseWriter of a report on a stream: it keeps
// the status and body, to go out as one answer frame.
type frameWriter struct {
	header http.Header
	status int
	buf    []byte // the frame: header, then body
}

func (f *frameWriter) reset() {
	clear(f.header)
	f.status = 0
	f.buf = append(f.buf[:0], make([]byte, agentapi.AnswerFrameHeaderBytes)...)
}

func (f *frameWriter) Header() http.Header { return f.header }

func (f *frameWriter) WriteHeader(status int) {
	if f.status == 0 {
		f.status = status
	}
}

func (f *frameWriter) Write(p []byte) (int, error) {
	f.WriteHeader(http.StatusOK)
	f.buf = append(f.buf, p...)
	return len(p), nil
}

// frame is the answer frame: status, length, body.
func (f *frameWriter) frame() []byte {
	f.WriteHeader(http.StatusOK)
	agentapi.PutAnswerFrameHeader(f.buf, f.status, len(f.buf)-agentapi.AnswerFrameHeaderBytes)
	return f.buf
}

// headerHasToken says whether a comma-separated header of h lists token,
// without regard to case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// registerStreamMetrics adds the open streams to /metrics.
func (s *Server) registerStreamMetrics() {
	s.metrics.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bbb_balancer_report_streams", Help: "Agents reporting over a report stream (open connections); the others report by POST.",
	}, func() float64 { return float64(s.streams.open()) }))
}
