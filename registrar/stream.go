package registrar

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
)

// Reports go over a report stream (agentapi.PathReportStream) where the
// balancer, and every proxy before it, takes one; else by POST, as before.
// No report is lost to the stream: one that did not get its answer over it
// goes by POST at once (the balancer accepts a report again with the same
// seq).
const (
	// streamRetryAfterFailure is how many reports go by POST after a
	// stream broke or could not be opened (the balancer restarted, the
	// network failed) before the next try: about a minute at 5 s.
	streamRetryAfterFailure = 12
	// streamRetryAfterRefusal is how many go by POST after the balancer,
	// or a proxy before it, answered the upgrade with something other
	// than 101, or did not answer the upgrade or a report on the stream
	// in time: about ten minutes at 5 s. An older balancer, or a proxy
	// that does not pass upgrades, answers so every time.
	streamRetryAfterRefusal = 120
)

// WithReportStream says whether reports may go over a report stream
// (default true); false sends every report by POST.
func WithReportStream(on bool) Option { return func(o *options) { o.noStream = !on } }

// reportStream is a Balancer's report stream: at most one open, used by
// one report at a time.
type reportStream struct {
	mu     sync.Mutex
	off    bool               // WithReportStream(false)
	conn   io.ReadWriteCloser // nil: none open
	bearer string             // the credential it was opened with
	cancel context.CancelFunc // ends the upgrade request
	skip   int                // reports to send by POST before the next try
	why    string             // why reports go by POST, once the stream failed
	frame  []byte
}

// ReportTransport says how reports go to the balancer, for bbb-agent
// status: "stream", or "POST" and why.
func (b *Balancer) ReportTransport() string {
	s := &b.stream
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.off:
		return "POST (the report stream is turned off)"
	case s.conn != nil:
		return "stream"
	case s.why != "":
		return fmt.Sprintf("POST: %s; the stream is tried again in %d reports", s.why, s.skip)
	}
	return "POST"
}

// report sends a report's body over the stream, opening one if needed. ok
// false says it did not (no stream may be opened now, or it broke before
// the answer came): the caller sends it by POST. An error with ok true is
// the caller's context ending, or the balancer not answering in time.
func (s *reportStream) report(ctx context.Context, b *Balancer, what, bearer string, body []byte) (ans answer, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.off {
		return answer{}, false, nil
	}
	if s.conn != nil && s.bearer != bearer {
		s.closeLocked() // a new credential: a new stream
	}
	if s.conn == nil {
		if s.skip > 0 {
			s.skip--
			return answer{}, false, nil
		}
		if opened, timedOut := s.openLocked(ctx, b, bearer); !opened {
			switch {
			case ctx.Err() != nil:
				return answer{}, true, fmt.Errorf("%s: %w", what, ctx.Err())
			case timedOut:
				// A balancer that does not answer within the timeout
				// would not answer a POST either: the report loop keeps
				// its pace.
				return answer{}, true, fmt.Errorf("%s: no answer to the report stream's upgrade within %s: %w", what, b.ep.timeout, context.DeadlineExceeded)
			}
			return answer{}, false, nil
		}
	}
	conn := s.conn
	rctx, cancel := context.WithTimeout(ctx, b.ep.timeout)
	defer cancel()
	stop := context.AfterFunc(rctx, func() { conn.Close() }) // unblocks the write or read
	s.frame = agentapi.AppendReportFrame(s.frame[:0], body)
	_, err = conn.Write(s.frame)
	var (
		status int
		reply  []byte
	)
	if err == nil {
		status, reply, err = agentapi.ReadAnswerFrame(conn, maxAnswerBytes)
	}
	if stop() && err == nil {
		return answer{status: status, contentType: "application/json", body: reply}, true, nil
	}
	s.closeLocked()
	s.skip = streamRetryAfterFailure
	s.why = "the report stream broke: " + errorText(err)
	switch {
	case ctx.Err() != nil:
		return answer{}, true, fmt.Errorf("%s: %w", what, ctx.Err())
	case rctx.Err() != nil:
		// The POSTs answered meanwhile say whether the balancer was slow
		// or something between passes the upgrade and not the stream.
		s.skip = streamRetryAfterRefusal
		s.why = fmt.Sprintf("no answer on the report stream within %s", b.ep.timeout)
		return answer{}, true, fmt.Errorf("%s: no answer within %s: %w", what, b.ep.timeout, context.DeadlineExceeded)
	}
	return answer{}, false, nil // broke: by POST
}

// openLocked asks the balancer to upgrade a connection to a report stream,
// within the request timeout, and says whether it did, and if not whether
// the timeout passed.
func (s *reportStream) openLocked(ctx context.Context, b *Balancer, bearer string) (opened, timedOut bool) {
	// The upgrade's context lives as long as the stream: the transport
	// may tie the connection to it.
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	timer := time.AfterFunc(b.ep.timeout, cancel)
	stopCtx := context.AfterFunc(ctx, cancel)
	fail := func(skip int, why string) (bool, bool) {
		expired := hctx.Err() != nil && ctx.Err() == nil
		cancel()
		if expired {
			skip = streamRetryAfterRefusal // as a stream that answers nothing
		}
		s.skip, s.why = skip, why
		return false, expired
	}
	req, err := http.NewRequestWithContext(hctx, http.MethodGet, b.base+agentapi.PathReportStream, nil)
	if err != nil {
		return fail(streamRetryAfterRefusal, "the report stream's request: "+err.Error())
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", agentapi.ReportStreamProtocol)
	resp, err := b.ep.client.Do(req)
	inTime, alive := timer.Stop(), stopCtx()
	if err != nil {
		return fail(streamRetryAfterFailure, "could not open the report stream: "+errorText(err))
	}
	conn, isConn := resp.Body.(io.ReadWriteCloser)
	if resp.StatusCode != http.StatusSwitchingProtocols || !isConn {
		resp.Body.Close() // unread: the refusal says all there is
		return fail(streamRetryAfterRefusal, fmt.Sprintf("the balancer, or a proxy before it, refused the report stream (HTTP %d); a proxy must pass upgrades on %s", resp.StatusCode, agentapi.PathReportStream))
	}
	if !inTime || !alive {
		conn.Close()
		return fail(streamRetryAfterFailure, "no answer to the report stream's upgrade in time")
	}
	s.conn, s.bearer, s.cancel, s.why = conn, bearer, cancel, ""
	return true, false
}

func (s *reportStream) closeLocked() {
	if s.conn != nil {
		s.conn.Close()
		s.cancel()
		s.conn, s.bearer, s.cancel = nil, "", nil
	}
}

// close closes the stream, if one is open.
func (s *reportStream) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked()
}

// errorText is a transport error without the request's URL, "closed" for
// none (the stream was closed under the report).
func errorText(err error) string {
	if err == nil {
		return "closed"
	}
	return withoutURL(err).Error()
}
