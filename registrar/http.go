package registrar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
)

// Defaults of the options.
const (
	// DefaultTimeout bounds one request, answer included.
	DefaultTimeout = 10 * time.Second
	// maxAnswerBytes bounds an answer read from a balancer; Scalelite's
	// getServers lists the whole pool, so this is generous.
	maxAnswerBytes = 8 << 20
	// maxMessageBytes bounds a server's error message quoted in an error.
	maxMessageBytes = 300
	// maxConflictBytes bounds bbb-balancer's refusal of a registration,
	// which names the holder and every way out.
	maxConflictBytes = 2000
)

// Option configures NewBalancer and NewScalelite.
type Option func(*options)

type options struct {
	client    *http.Client
	timeout   time.Duration
	algorithm bbb.Algorithm
	credFile  string
	takeover  bool
	noStream  bool
}

// WithHTTPClient sends the requests through c (proxies, TLS settings, tests).
// The default client follows no redirects: a redirect is reported as an error
// naming the new address, to be fixed in the configuration; its transport is
// NewTransport's.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithTimeout bounds each request, its answer included (default DefaultTimeout).
// A test seam: the commands keep the default.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithChecksumAlgorithm picks the checksum algorithm of Scalelite calls
// (default sha256; Scalelite accepts sha1, sha256 and sha512 unless its
// LOADBALANCER_CHECKSUM_ALGORITHM says otherwise). NewBalancer ignores it.
func WithChecksumAlgorithm(a bbb.Algorithm) Option { return func(o *options) { o.algorithm = a } }

// WithCredentialFile keeps the node's own credential, which bbb-balancer
// answers at registration, in path (mode 0600; bbb-agent uses
// <state-dir>/node-credential). Without it the agent token is sent on every
// call, as agents did before node credentials. NewScalelite ignores it.
func WithCredentialFile(path string) Option { return func(o *options) { o.credFile = path } }

// WithTakeover asks bbb-balancer to let this agent take over a node name
// another identity holds; the balancer allows it only after an operator's
// `bbb-balancer servers allow-takeover NAME`. NewScalelite ignores it.
func WithTakeover(takeover bool) Option { return func(o *options) { o.takeover = takeover } }

// NewTransport is the transport of the default client, for callers that
// build their own client (bbb-agent's --balancer-ca): http.DefaultTransport's
// settings (proxies from the environment, dial, TLS handshake and idle
// timeouts), speaking HTTP/1.1 alone. An agent sends one small request every
// few seconds over a connection it keeps open: HTTP/2 multiplexes nothing
// for it, yet a server spends 1.5 to 2.3 times the CPU on each report, and
// holds 29 KiB for each open connection instead of 19 KiB
// (balancer.BenchmarkReportTransport). An HTTPS server would negotiate
// HTTP/2 with the default transport.
func NewTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP1(true)
	return t
}

func buildOptions(opts []Option) (options, error) {
	o := options{timeout: DefaultTimeout, algorithm: bbb.SHA256}
	for _, opt := range opts {
		opt(&o)
	}
	if o.timeout <= 0 {
		return o, fmt.Errorf("registrar: request timeout %s: want a positive duration", o.timeout)
	}
	if _, err := bbb.ParseAlgorithm(string(o.algorithm)); err != nil {
		return o, fmt.Errorf("registrar: %w", err)
	}
	if o.client == nil {
		o.client = &http.Client{Transport: NewTransport(), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return o, nil
}

// parseBaseURL checks a balancer's address and returns it without a trailing
// slash, and the form of it that may appear in messages (no password).
func parseBaseURL(kind, raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("registrar: %s URL %q: want http(s)://host[:port][/path]", kind, redactURL(raw))
	}
	u.RawQuery, u.Fragment = "", ""
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// redactURL hides a password in a URL that did not parse as one.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if at := strings.LastIndex(raw, "@"); at >= 0 {
		return "…" + raw[at:]
	}
	return raw
}

// showLocation is a redirect's target as it may appear in messages: no
// password, and no query string, which may carry a replayable checksum.
func showLocation(loc string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return "(unreadable address)"
	}
	u.RawQuery, u.Fragment = "", ""
	return u.Redacted()
}

// endpoint sends requests to one balancer and reads bounded answers.
type endpoint struct {
	client  *http.Client
	timeout time.Duration
}

// answer is a balancer's HTTP answer, read in full.
type answer struct {
	status      int
	contentType string
	location    string
	body        []byte
}

// do sends req with the per-request timeout. what names the request in
// errors; it never carries a query string (Scalelite's holds a checksum).
func (e endpoint) do(ctx context.Context, what string, build func(context.Context) (*http.Request, error)) (answer, error) {
	rctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	req, err := build(rctx)
	if err != nil {
		return answer{}, fmt.Errorf("%s: %w", what, err)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return answer{}, e.transportError(ctx, rctx, what, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return answer{}, e.transportError(ctx, rctx, what+": reading the answer", err)
	}
	if len(body) > maxAnswerBytes {
		return answer{}, fmt.Errorf("%s: the answer is larger than %d bytes", what, maxAnswerBytes)
	}
	return answer{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"),
		location: resp.Header.Get("Location"), body: body}, nil
}

// transportError says whether the caller gave up, the request timed out or
// the network failed. The request URL is left out of the message.
func (e endpoint) transportError(parent, rctx context.Context, what string, err error) error {
	if parent.Err() != nil {
		return fmt.Errorf("%s: %w", what, parent.Err())
	}
	if rctx.Err() != nil {
		return fmt.Errorf("%s: no answer within %s: %w", what, e.timeout, context.DeadlineExceeded)
	}
	return fmt.Errorf("%s: %w", what, withoutURL(err))
}

// withoutURL is a transport error without the request's URL, which
// net/http's errors carry (and with it a password the URL may hold).
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// unexpected describes an answer that is neither success nor a known error.
func (a answer) unexpected(what, message string) error {
	switch {
	case a.status/100 == 3:
		return fmt.Errorf("%s: HTTP %d redirect to %q: configure that address instead", what, a.status, showLocation(a.location))
	case message != "":
		return fmt.Errorf("%s: HTTP %d: %s", what, a.status, message)
	}
	return fmt.Errorf("%s: HTTP %d %s (%s)", what, a.status, http.StatusText(a.status), a.describe())
}

// describe sums up a body without quoting it: it may hold secrets.
func (a answer) describe() string {
	ct := a.contentType
	if ct == "" {
		ct = "no content type"
	}
	return fmt.Sprintf("%s, %d bytes", ct, len(a.body))
}

// cleanMessage makes a server's error message safe to quote: secrets the
// registrar knows are cut out, and the length is bounded.
func cleanMessage(msg string, secrets ...string) string {
	return cleanMessageMax(msg, maxMessageBytes, secrets...)
}

// cleanMessageMax is cleanMessage with a bound of limit bytes.
func cleanMessageMax(msg string, limit int, secrets ...string) string {
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	msg = strings.TrimSpace(msg)
	if len(msg) > limit {
		msg = strings.ToValidUTF8(msg[:limit], "") + "…"
	}
	return msg
}
