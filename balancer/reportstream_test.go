package balancer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
)

// streamClient is a raw report stream, as bbb-agent opens it.
type streamClient struct {
	conn net.Conn
	br   *bufio.Reader
}

// openStream asks baseURL to upgrade to a report stream with token (and
// the upgrade headers, unless upgrade is false). It returns the answer to
// the upgrade and, on 101, the stream.
func openStream(baseURL, token string, upgrade bool) (*http.Response, *streamClient, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, nil, err
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest(http.MethodGet, baseURL+agentapi.PathReportStream, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if upgrade {
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", agentapi.ReportStreamProtocol)
	}
	br := bufio.NewReader(conn)
	var resp *http.Response
	if err = req.Write(conn); err == nil {
		resp, err = http.ReadResponse(br, req)
	}
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("no answer to the upgrade: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		conn.Close()
		return resp, nil, nil
	}
	_ = conn.SetDeadline(time.Time{})
	return resp, &streamClient{conn: conn, br: br}, nil
}

// dialStream is openStream for a test, the stream closed when it ends.
func dialStream(t *testing.T, baseURL, token string, upgrade bool) (*http.Response, *testStream) {
	t.Helper()
	resp, s, err := openStream(baseURL, token, upgrade)
	if err != nil {
		t.Fatal(err)
	}
	if s == nil {
		return resp, nil
	}
	t.Cleanup(func() { s.conn.Close() })
	return resp, &testStream{streamClient: s, t: t}
}

// send sends one frame with body and reads its answer.
func (s *streamClient) send(body []byte) (int, []byte, error) {
	if _, err := s.conn.Write(agentapi.AppendReportFrame(nil, body)); err != nil {
		return 0, nil, err
	}
	return agentapi.ReadAnswerFrame(s.br, 1<<20)
}

// testStream is a streamClient of a test.
type testStream struct {
	*streamClient
	t *testing.T
}

// report sends a report and wants status and, on an error, the code.
func (s *testStream) report(req agentapi.ReportRequest, status int, code string) []byte {
	s.t.Helper()
	body, _ := json.Marshal(req)
	return s.want(body, status, code)
}

func (s *testStream) want(body []byte, status int, code string) []byte {
	s.t.Helper()
	_ = s.conn.SetDeadline(time.Now().Add(10 * time.Second))
	got, answer, err := s.send(body)
	if err != nil {
		s.t.Fatalf("no answer frame: %v", err)
	}
	if got != status {
		s.t.Fatalf("answer %d %s, want %d", got, answer, status)
	}
	if code != "" {
		var ae agentapi.Error
		if json.Unmarshal(answer, &ae) != nil || ae.Code != code || ae.Error == "" {
			s.t.Fatalf("answer %s, want code %s", answer, code)
		}
	}
	return answer
}

// ended says whether the balancer closed the stream.
func (s *testStream) ended() bool {
	_ = s.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := s.br.ReadByte()
	return errors.Is(err, io.EOF)
}

// registerWithCredential registers nd as an agent with node credentials
// does and returns its credential.
func (e *env) registerWithCredential(nd *node) string {
	e.t.Helper()
	var resp agentapi.RegisterResponse
	e.agentCall(agentapi.PathRegister, agentapi.RegisterRequest{Node: nd.name, URL: nd.http.URL, Secret: nd.secret, Role: "bbb",
		ReportIntervalSeconds: 5, NodeCredential: true}, &resp, http.StatusOK)
	if resp.Credential == "" {
		e.t.Fatal("no credential")
	}
	return resp.Credential
}

// Every report on a stream is served as POST agentapi.PathReport serves it,
// refusals included, the credential checked on each; the stream outlives
// a refused report, not a frame it cannot trust.
func TestReportStreamServesReports(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		e := newEnv(t, dsn, testenv.NewClock())
		e.addNodes(2)
		cred := e.registerWithCredential(e.nodes[0])
		e.registerWithCredential(e.nodes[1])
		resp, s := dialStream(t, e.http.URL, cred, true)
		if s == nil || !headerHasToken(resp.Header, "Upgrade", agentapi.ReportStreamProtocol) {
			t.Fatalf("upgrade answered %s %v", resp.Status, resp.Header)
		}
		name := e.nodes[0].name
		load := fleet.Load{Meetings: 2, Participants: 9, BBBHealthy: true}
		streamed := s.report(agentapi.ReportRequest{Node: name, Run: "r1", Seq: 1, Load: load}, http.StatusOK, "")
		s.want([]byte(`{{{`), http.StatusBadRequest, agentapi.CodeBadRequest)
		s.report(agentapi.ReportRequest{Node: e.nodes[1].name, Run: "r1", Seq: 2, Load: load}, http.StatusForbidden, agentapi.CodeForbidden)
		s.report(agentapi.ReportRequest{Node: "ghost", Run: "r1", Seq: 2, Load: load}, http.StatusForbidden, agentapi.CodeForbidden)
		s.report(agentapi.ReportRequest{Node: name, Run: "r1", Seq: 0, Load: load}, http.StatusBadRequest, agentapi.CodeBadRequest)
		s.report(agentapi.ReportRequest{Node: name, Run: "r1", Seq: 2, Load: load}, http.StatusOK, "")

		// The same answer as a POST's, byte for byte.
		body, _ := json.Marshal(agentapi.ReportRequest{Node: name, Run: "r1", Seq: 3, Load: load})
		status, posted := e.do(http.MethodPost, agentapi.PathReport, cred, json.RawMessage(body))
		if status != http.StatusOK || !bytes.Equal(posted, streamed) {
			t.Errorf("POST answered %d %s; the stream %s", status, posted, streamed)
		}
		if got := e.status()[0]; got.Participants != 9 {
			t.Errorf("the streamed report is not in the fleet: %+v", got)
		}
		// After the POST's seq 3, the stream's seq 2 goes back.
		s.report(agentapi.ReportRequest{Node: name, Run: "r1", Seq: 2, Load: load}, http.StatusBadRequest, agentapi.CodeBadRequest)

		// A cordoned node's reports (agentReport's way, on a worker) and
		// an enabled one's (on the stream's goroutine) answer its state.
		seq := int64(3)
		state := func(want fleet.AdminState) {
			t.Helper()
			seq++
			var got agentapi.ReportResponse
			answer := s.report(agentapi.ReportRequest{Node: name, Run: "r1", Seq: seq, Load: load}, http.StatusOK, "")
			if json.Unmarshal(answer, &got) != nil || got.State != want {
				t.Fatalf("report %d answered %s, want state %s", seq, answer, want)
			}
		}
		for _, step := range []struct {
			path string
			want fleet.AdminState
		}{{agentapi.PathCordon, fleet.Cordoned}, {agentapi.PathEnable, fleet.Enabled}} {
			if status, b := e.do(http.MethodPost, step.path, cred, agentapi.NodeRequest{Node: name}); status != http.StatusOK {
				t.Fatalf("%s: %d %s", step.path, status, b)
			}
			state(step.want)
			state(step.want)
		}

		// A cordoned node that reports no meetings (none placed) is
		// disabled, as POST's report does.
		if status, b := e.do(http.MethodPost, agentapi.PathCordon, cred, agentapi.NodeRequest{Node: name}); status != http.StatusOK {
			t.Fatalf("cordon: %d %s", status, b)
		}
		seq++
		var drained agentapi.ReportResponse
		answer := s.report(agentapi.ReportRequest{Node: name, Run: "r1", Seq: seq, Load: fleet.Load{BBBHealthy: true}}, http.StatusOK, "")
		if json.Unmarshal(answer, &drained) != nil || drained.State != fleet.Disabled {
			t.Fatalf("a cordoned node's report of no meetings answered %s, want state %s", answer, fleet.Disabled)
		}
		if status, b := e.do(http.MethodPost, agentapi.PathEnable, cred, agentapi.NodeRequest{Node: name}); status != http.StatusOK {
			t.Fatalf("enable: %d %s", status, b)
		}

		// A leaving node's report is noted; its next one without leaving
		// takes the note back.
		seq++
		s.report(agentapi.ReportRequest{Node: name, Run: "r1", Seq: seq, Load: load, Leaving: true}, http.StatusOK, "")
		if _, noted := e.srv.leaving.snapshot()[e.status()[0].ID]; !noted {
			t.Error("a leaving report over the stream is not noted")
		}
		state(fleet.Enabled) // leaving with meetings running changes no state
		if len(e.srv.leaving.snapshot()) != 0 {
			t.Error("a report without leaving leaves the node noted as leaving")
		}

		// The meetings a streamed report lists prune the node's
		// placements, as a POST's do.
		if _, _, err := e.store.ClaimMeeting(ctxT(t), records.Meeting{MeetingID: "ghost", NodeID: e.status()[0].ID, PlacedAt: e.clock.Now()}); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(10 * time.Second)
		seq++
		s.report(agentapi.ReportRequest{Node: name, Run: "r1", Seq: seq, Load: load, MeetingIDs: []string{"running"}}, http.StatusOK, "")
		e.srv.bg.Wait()
		if e.placed("ghost") {
			t.Error("the placement of a meeting the streamed report does not list is still there")
		}

		// A rotated credential stops working on the stream at once.
		var rotated agentapi.RotateResponse
		if status, b := e.do(http.MethodPost, agentapi.PathRotate, cred, agentapi.NodeRequest{Node: name}); status != http.StatusOK || json.Unmarshal(b, &rotated) != nil {
			t.Fatalf("rotate: %d %s", status, b)
		}
		seq++
		s.report(agentapi.ReportRequest{Node: name, Run: "r1", Seq: seq, Load: load}, http.StatusUnauthorized, agentapi.CodeUnauthorized)
		_, s2 := dialStream(t, e.http.URL, rotated.Credential, true)
		s2.report(agentapi.ReportRequest{Node: name, Run: "r1", Seq: seq, Load: load}, http.StatusOK, "")

		// A frame larger than the agent API takes: refused, and the stream
		// closed (what follows the header cannot be trusted).
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], agentapi.MaxBodyBytes+1)
		if _, err := s2.conn.Write(hdr[:]); err != nil {
			t.Fatal(err)
		}
		status, answer, err := agentapi.ReadAnswerFrame(s2.br, 1<<20)
		if err != nil || status != http.StatusBadRequest || !strings.Contains(string(answer), "256 KiB") {
			t.Fatalf("oversize frame: %d %s %v", status, answer, err)
		}
		if !s2.ended() {
			t.Error("the stream stays open after an oversize frame")
		}
	})
}

// The upgrade itself: a wrong credential is refused as on every agent
// call, and a request that does not ask to upgrade (a proxy dropped the
// headers) gets 426 naming the protocol, so that the agent reports by POST.
func TestReportStreamUpgrade(t *testing.T) {
	e := newEnv(t, backends[0].dsn(t), testenv.NewClock())
	e.addNodes(1)
	cred := e.registerWithCredential(e.nodes[0])
	resp, s := dialStream(t, e.http.URL, "wrong", true)
	if s != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong credential: %s", resp.Status)
	}
	resp, s = dialStream(t, e.http.URL, cred, false)
	body, _ := io.ReadAll(resp.Body)
	if s != nil || resp.StatusCode != http.StatusUpgradeRequired || resp.Header.Get("Upgrade") != agentapi.ReportStreamProtocol ||
		!strings.Contains(string(body), "POST "+agentapi.PathReport) {
		t.Errorf("no upgrade asked: %s %v %s", resp.Status, resp.Header, body)
	}
}

// A frame cut in the middle: nothing of it is served, and the stream ends.
func TestReportStreamCutFrame(t *testing.T) {
	e := newEnv(t, backends[0].dsn(t), testenv.NewClock())
	e.addNodes(1)
	cred := e.registerWithCredential(e.nodes[0])
	_, s := dialStream(t, e.http.URL, cred, true)
	body, _ := json.Marshal(agentapi.ReportRequest{Node: e.nodes[0].name, Run: "r", Seq: 1, Load: fleet.Load{Participants: 7, BBBHealthy: true}})
	frame := agentapi.AppendReportFrame(nil, body)
	if _, err := s.conn.Write(frame[:len(frame)-5]); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "the stream to be open", func() bool { return e.srv.streams.open() == 1 })
	s.conn.Close()
	testenv.Eventually(t, 5*time.Second, "the cut stream to end", func() bool { return e.srv.streams.open() == 0 })
	if got := e.status()[0]; got.Participants == 7 {
		t.Error("a cut frame was served")
	}
}

// When the replica stops, its streams are closed after the report under
// way, and what they reported is in the last flush.
func TestReportStreamStopsWithRun(t *testing.T) {
	dsn := "sqlite:" + t.TempDir() + "/b.db"
	e := newEnv(t, dsn, testenv.NewClock())
	e.addNodes(1)
	cred := e.registerWithCredential(e.nodes[0])
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Run(ctx) }()
	_, s := dialStream(t, e.http.URL, cred, true)
	s.report(agentapi.ReportRequest{Node: e.nodes[0].name, Run: "r", Seq: 1, Load: fleet.Load{Participants: 11, BBBHealthy: true}}, http.StatusOK, "")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !s.ended() {
		t.Error("the stream outlives the replica")
	}
	nodes, err := e.store.Nodes(context.Background())
	if err != nil || len(nodes) != 1 || nodes[0].Load.Participants != 11 {
		t.Fatalf("the streamed report is not in the store: %+v %v", nodes, err)
	}
	// A stopped replica takes no new stream.
	resp, s := dialStream(t, e.http.URL, cred, true)
	if s != nil {
		t.Errorf("a stopped replica upgraded a stream: %s", resp.Status)
	}
}

// A report whose handler panics ends its stream, and the replica and its
// other streams go on: served by a worker (agentReport's way, here a
// leaving node's report) or on the stream's goroutine (reportInline).
func TestReportStreamPanic(t *testing.T) {
	var inc panickyCounter
	e := newEnvWith(t, backends[0].dsn(t), testenv.NewClock(), func(s *Server) {
		serve := s.streams.serve
		s.streams = newReportStreams(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if bytes.Contains(body, []byte(`"seq":13`)) {
				panic("a bug")
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			serve(w, r)
		})
		inc.Counter = s.metrics.reports
		s.metrics.reports = &inc
	})
	e.addNodes(1)
	cred := e.registerWithCredential(e.nodes[0])
	_, healthy := dialStream(t, e.http.URL, cred, true)
	report := agentapi.ReportRequest{Node: e.nodes[0].name, Run: "r", Seq: 1, Load: fleet.Load{BBBHealthy: true, Meetings: 1}}
	healthy.report(report, http.StatusOK, "")
	panics := func(report agentapi.ReportRequest) {
		t.Helper()
		_, s := dialStream(t, e.http.URL, cred, true)
		body, _ := json.Marshal(report)
		if _, err := s.conn.Write(agentapi.AppendReportFrame(nil, body)); err != nil {
			t.Fatal(err)
		}
		if !s.ended() {
			t.Errorf("the stream whose report (seq %d) panicked stays open", report.Seq)
		}
	}
	leaving := report
	leaving.Seq, leaving.Leaving = 13, true
	panics(leaving)
	report.Seq = 14
	healthy.report(report, http.StatusOK, "")
	inc.panics.Store(true)
	report.Seq = 15
	panics(report)
	inc.panics.Store(false)
	report.Seq = 16
	healthy.report(report, http.StatusOK, "")
}

// panickyCounter is a counter that panics when told to.
type panickyCounter struct {
	prometheus.Counter
	panics atomic.Bool
}

func (c *panickyCounter) Inc() {
	if c.panics.Load() {
		panic("a bug")
	}
	c.Counter.Inc()
}

// A stream that stays quiet past its bound is closed.
func TestReportStreamIdle(t *testing.T) {
	e := newEnv(t, backends[0].dsn(t), testenv.NewClock())
	server, client := net.Pipe()
	defer client.Close()
	if !e.srv.streams.add(server) {
		t.Fatal("the replica takes no stream")
	}
	base := (&http.Request{Method: http.MethodPost, URL: reportURL}).WithContext(e.srv.streams.ctx)
	go e.srv.serveReportStream(server, server, base, nil, 50*time.Millisecond)
	testenv.Eventually(t, 5*time.Second, "the quiet stream to close", func() bool { return e.srv.streams.open() == 0 })
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("the agent's end reads %v, want the stream closed", err)
	}
}
