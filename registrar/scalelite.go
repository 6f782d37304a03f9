package registrar

// Scalelite's server management API on the wire, as its documentation and
// issue tracker describe it (Scalelite is AGPL: none of its code was read or
// copied; internal/emulate/scalelite emulates what is written here):
//
//   - docs/api-README.md, https://github.com/blindsidenetworks/scalelite/blob/master/docs/api-README.md
//     (Scalelite 1.5.1+; the API arrived with pull request #953, "Standardized
//     server and tenant API"): under /scalelite/api/, GET getServers,
//     GET getServerInfo?id=ID, and POST addServer, updateServer, deleteServer
//     and panicServer with a JSON body (Content-Type: application/json). Every
//     example, POSTs included, carries ?checksum=<checksum> in the query string.
//     A server is {"id","url","secret","tag","state","load","load_multiplier",
//     "online"}, every field documented as a string; getServers answers a JSON
//     array of them, getServerInfo, addServer and updateServer one of them,
//     deleteServer and panicServer {"success": "..."}. addServer takes
//     {"server":{"url","secret","load_multiplier","tag"}}, load_multiplier
//     defaulting to 1.0 when missing or zero; updateServer takes
//     {"id","server":{"state","load_multiplier","secret","tag"}} with state
//     "enable", "cordon" or "disable", and tag "" removing the tag; deleteServer
//     takes {"id"}.
//   - issue #1025, https://github.com/blindsidenetworks/scalelite/issues/1025:
//     the checksum is the BBB API's (a maintainer points to BBB's API security
//     model): hex(hash(call name + query string + LOADBALANCER_SECRET)).
//   - issue #1158, https://github.com/blindsidenetworks/scalelite/issues/1158:
//     GET getServers?checksum=sha256("getServers" + secret) works, while a
//     checksum computed over addServer's JSON body is refused with BBB's XML
//     <returncode>FAILED</returncode> answer. The body is not signed: a POST's
//     checksum covers the call name and its (empty) query string. A third-party
//     client, the Ansible module scalelite_server_manager, signs POSTs exactly
//     so and appends ?checksum= to their URL.
//   - issue #1237, https://github.com/blindsidenetworks/scalelite/issues/1237:
//     a wrong or missing checksum is answered with HTTP 200 (BBB's convention).
//   - docs/configuration-README.md: LOADBALANCER_SECRET and LOADBALANCER_SECRETS
//     are the secrets; LOADBALANCER_CHECKSUM_ALGORITHM defaults to accepting
//     sha1, sha256 and sha512; SERVER_ID_IS_HOSTNAME=true makes a server's id its
//     hostname instead of a random UUID.
//   - The Ansible module's documentation: a server added through the API
//     "remains disabled (the default in scalelite)". Its code reads a 404 from
//     getServers as an empty pool, and its sample answer mixes types:
//     "state": "enabled", "load": 0.0, "load_multiplier": "1.0", "online": "online".
//
// Where the documentation is silent this client is lenient: a 404 with a JSON
// body from a call naming a server id means "no such server" (a 404 that is
// not JSON means a wrong address); 400 and 422 are refusals whose JSON
// "error", "message" or "errors" is quoted; a server without "state" but with
// the older "enabled" flag is read from the flag.

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// ScalelitePath is where Scalelite serves its server management API.
const ScalelitePath = "/scalelite/api"

// Scalelite is a Registrar for Scalelite's server management API. Scalelite
// polls its servers itself, so Report sends nothing and only reads back the
// server's state. A Scalelite server carries one tag: Register gives it the
// first of Registration.Tags and ignores the others. It is safe for
// concurrent use.
type Scalelite struct {
	base   string // scheme://host[:port][/prefix]/scalelite/api
	shown  string // base as it may appear in messages
	secret string // the load balancer secret
	alg    bbb.Algorithm
	ep     endpoint

	register sync.Mutex // one Register at a time: two lookups could add twice

	mu        sync.Mutex
	id        string // the server's id at Scalelite, once registered
	bbbSecret string // the registered BBB secret, cut out of quoted messages
	unenabled string // id of a server this value added and has not enabled yet
}

// NewScalelite returns a Registrar for the Scalelite at apiURL, which may be
// given as https://sl.example.com, https://sl.example.com/scalelite/api or
// the front-ends' https://sl.example.com/bigbluebutton/api. lbSecret is
// Scalelite's LOADBALANCER_SECRET (or one of LOADBALANCER_SECRETS).
func NewScalelite(apiURL, lbSecret string, opts ...Option) (*Scalelite, error) {
	u, err := parseBaseURL("Scalelite", apiURL)
	if err != nil {
		return nil, err
	}
	p := strings.TrimSuffix(u.Path, ScalelitePath)
	p = strings.TrimSuffix(p, "/api")
	p = strings.TrimSuffix(p, "/bigbluebutton")
	u.Path = p + ScalelitePath
	if lbSecret == "" {
		return nil, errors.New("registrar: no Scalelite secret: give Scalelite's LOADBALANCER_SECRET")
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	return &Scalelite{base: u.String(), shown: u.Redacted(), secret: lbSecret, alg: o.algorithm,
		ep: endpoint{client: o.client, timeout: o.timeout}}, nil
}

// Kind returns "scalelite".
func (s *Scalelite) Kind() string { return "scalelite" }

// Register finds the server by its API URL first (getServers), so that a
// reboot or a retry never adds a second entry, and adds it only when absent.
// A server found is left in its state: an operator's cordon, a drain in
// progress or Scalelite disabling a drained server all survive a reboot; only
// Enable (undrain) enables it again. A server Register adds itself starts
// disabled at Scalelite and is enabled at once, as bbb-balancer enables a new
// node; if that step fails, Register on the same value enables it when
// retried. Secret, load multiplier and tag are updated when they differ from
// the registration; a zero LoadMultiplier or empty Tags leave Scalelite's
// value alone.
func (s *Scalelite) Register(ctx context.Context, r Registration) (fleet.AdminState, error) {
	what := "registrar: Scalelite at " + s.shown + ": register"
	if r.Role == fleet.RoleTURN {
		return "", fmt.Errorf("%s: %w: Scalelite balances BBB servers only; a TURN node needs bbb-balancer", what, ErrRejected)
	}
	apiURL, err := bbb.APIURL(r.URL)
	if err != nil {
		return "", fmt.Errorf("%s: %w: %w", what, ErrRejected, err)
	}
	if r.Secret == "" {
		return "", fmt.Errorf("%s: %w: the BBB secret is empty", what, ErrRejected)
	}
	if r.LoadMultiplier < 0 {
		return "", fmt.Errorf("%s: %w: the load multiplier must not be negative", what, ErrRejected)
	}
	var tag string
	if len(r.Tags) > 0 {
		tag = r.Tags[0]
	}
	s.register.Lock()
	defer s.register.Unlock()
	s.mu.Lock()
	s.bbbSecret = r.Secret
	s.mu.Unlock()

	servers, err := s.getServers(ctx)
	if err != nil {
		return "", err
	}
	srv, found := findServer(servers, apiURL)
	if found {
		if change := drift(srv, r, tag); change != (slFields{}) {
			if srv, err = s.updateServer(ctx, string(srv.ID), change); err != nil {
				return "", err
			}
		}
	} else {
		if srv, err = s.addServer(ctx, slFields{URL: apiURL, Secret: r.Secret, LoadMultiplier: r.LoadMultiplier, Tag: tag}); err != nil {
			return "", err
		}
	}
	id := string(srv.ID)
	if id == "" {
		return "", fmt.Errorf("%s: getServers lists the server without an id", what)
	}
	s.mu.Lock()
	s.id = id
	if !found {
		s.unenabled = id
	}
	enable := s.unenabled == id
	s.mu.Unlock()
	if enable {
		if srv, err = s.updateServer(ctx, id, slFields{State: "enable"}); err != nil {
			return "", err
		}
		s.mu.Lock()
		s.unenabled = ""
		s.mu.Unlock()
	}
	return s.serverState("register", srv)
}

// Report reads the server's state back (getServerInfo): Scalelite measures
// load itself, so the report's figures are not sent. An operator's cordon
// reaches the agent this way.
func (s *Scalelite) Report(ctx context.Context, _ Report) (Reply, error) {
	id, err := s.registered()
	if err != nil {
		return Reply{}, err
	}
	ans, err := s.call(ctx, http.MethodGet, "getServerInfo", url.Values{"id": {id}}, nil)
	if errors.Is(err, errNoSuchServer) {
		return Reply{}, notRegistered(err)
	}
	if err != nil {
		return Reply{}, err
	}
	var srv slServer
	if err := s.decode("getServerInfo", ans, &srv); err != nil {
		return Reply{}, err
	}
	st, err := s.serverState("getServerInfo", srv)
	return Reply{State: st}, err
}

// Cordon sets the server's state to cordoned: no new meetings.
func (s *Scalelite) Cordon(ctx context.Context) error { return s.setState(ctx, "cordon") }

// Enable sets the server's state to enabled.
func (s *Scalelite) Enable(ctx context.Context) error { return s.setState(ctx, "enable") }

func (s *Scalelite) setState(ctx context.Context, state string) error {
	id, err := s.registered()
	if err != nil {
		return err
	}
	_, err = s.updateServer(ctx, id, slFields{State: state})
	if errors.Is(err, errNoSuchServer) {
		return notRegistered(err)
	}
	if err == nil && state == "enable" {
		s.mu.Lock()
		if s.unenabled == id {
			s.unenabled = ""
		}
		s.mu.Unlock()
	}
	return err
}

// Deregister deletes the server; a server already gone is deregistered. The
// server's id is kept, so Deregister can be retried.
func (s *Scalelite) Deregister(ctx context.Context) error {
	id, err := s.registered()
	if err != nil {
		return err
	}
	ans, err := s.call(ctx, http.MethodPost, "deleteServer", nil, slIDRequest{ID: id})
	if err != nil && !errors.Is(err, errNoSuchServer) {
		return err
	}
	if err != nil {
		return nil // already gone
	}
	var ok json.RawMessage
	return s.decode("deleteServer", ans, &ok)
}

func (s *Scalelite) registered() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.id == "" {
		return "", fmt.Errorf("registrar: Scalelite at %s: %w: register first", s.shown, ErrNotRegistered)
	}
	return s.id, nil
}

// notRegistered marks Scalelite's "no such server" as ErrNotRegistered. The
// id is kept: Deregister must still find the server gone.
func notRegistered(err error) error {
	return fmt.Errorf("%w: %w", err, ErrNotRegistered)
}

// errNoSuchServer marks Scalelite's answer that it has no server by that id.
var errNoSuchServer = errors.New("no such server at Scalelite")

// slServer is a server as Scalelite describes it. The documentation types
// every field as a string while real answers carry numbers too, so the
// fields read here accept either.
type slServer struct {
	ID             looseString `json:"id"`
	URL            string      `json:"url"`
	Secret         string      `json:"secret"`
	Tag            looseString `json:"tag"`
	State          looseString `json:"state"`
	Enabled        looseString `json:"enabled"`
	LoadMultiplier looseString `json:"load_multiplier"`
}

// slFields are the fields of addServer's and updateServer's "server" object.
type slFields struct {
	URL            string  `json:"url,omitempty"`
	Secret         string  `json:"secret,omitempty"`
	LoadMultiplier float64 `json:"load_multiplier,omitempty"`
	Tag            string  `json:"tag,omitempty"`
	State          string  `json:"state,omitempty"`
}

type slAddRequest struct {
	Server slFields `json:"server"`
}

type slUpdateRequest struct {
	ID     string   `json:"id"`
	Server slFields `json:"server"`
}

type slIDRequest struct {
	ID string `json:"id"`
}

// looseString is a JSON string, number, boolean or null, kept as text.
type looseString string

func (l *looseString) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case nil:
		*l = ""
	case string:
		*l = looseString(v)
	case float64, bool:
		*l = looseString(strings.TrimSpace(string(b)))
	default:
		return fmt.Errorf("want a string, number or boolean, got %s", b)
	}
	return nil
}

// findServer returns the first server whose URL names the same BBB API.
func findServer(servers []slServer, apiURL string) (slServer, bool) {
	for _, srv := range servers {
		if u, err := bbb.APIURL(srv.URL); err == nil && u == apiURL {
			return srv, true
		}
	}
	return slServer{}, false
}

// drift is the update that brings a found server in line with the registration.
func drift(srv slServer, r Registration, tag string) slFields {
	var f slFields
	if srv.Secret != r.Secret {
		f.Secret = r.Secret
	}
	if r.LoadMultiplier > 0 {
		lm, err := strconv.ParseFloat(string(srv.LoadMultiplier), 64)
		if err != nil || math.Abs(lm-r.LoadMultiplier) > 1e-9 {
			f.LoadMultiplier = r.LoadMultiplier
		}
	}
	if tag != "" && string(srv.Tag) != tag {
		f.Tag = tag
	}
	return f
}

func (s *Scalelite) serverState(action string, srv slServer) (fleet.AdminState, error) {
	raw := string(srv.State)
	if raw == "" {
		switch strings.ToLower(string(srv.Enabled)) {
		case "true":
			return fleet.Enabled, nil
		case "false":
			return fleet.Disabled, nil
		}
	}
	st, err := fleet.ParseAdminState(raw)
	if err != nil {
		return "", fmt.Errorf("%s: the server in the answer has no valid state: %w", s.what(action), err)
	}
	return st, nil
}

// Check lists Scalelite's servers, which needs a valid checksum.
func (s *Scalelite) Check(ctx context.Context) error {
	_, err := s.getServers(ctx)
	return err
}

func (s *Scalelite) getServers(ctx context.Context) ([]slServer, error) {
	ans, err := s.call(ctx, http.MethodGet, "getServers", nil, nil)
	if errors.Is(err, errNoSuchServer) {
		return nil, nil // Scalelite answers an empty pool with a 404
	}
	if err != nil {
		return nil, err
	}
	var servers []slServer
	return servers, s.decode("getServers", ans, &servers)
}

func (s *Scalelite) addServer(ctx context.Context, f slFields) (slServer, error) {
	return s.serverCall(ctx, "addServer", slAddRequest{Server: f})
}

func (s *Scalelite) updateServer(ctx context.Context, id string, f slFields) (slServer, error) {
	return s.serverCall(ctx, "updateServer", slUpdateRequest{ID: id, Server: f})
}

// serverCall POSTs a call that answers with the server.
func (s *Scalelite) serverCall(ctx context.Context, action string, in any) (slServer, error) {
	ans, err := s.call(ctx, http.MethodPost, action, nil, in)
	if err != nil {
		return slServer{}, err
	}
	var srv slServer
	if err := s.decode(action, ans, &srv); err != nil {
		return slServer{}, err
	}
	if srv.ID == "" {
		return slServer{}, fmt.Errorf("%s: the answer names no server id (%s)", s.what(action), ans.describe())
	}
	return srv, nil
}

func (s *Scalelite) what(action string) string {
	return "registrar: Scalelite at " + s.shown + ": " + action
}

func (s *Scalelite) decode(action string, ans answer, out any) error {
	if err := json.Unmarshal(ans.body, out); err != nil {
		return fmt.Errorf("%s: the answer is not the expected JSON (%s): %w", s.what(action), ans.describe(), err)
	}
	return nil
}

// call sends one signed API call: the checksum covers the call name and the
// query string, never the JSON body (see the notes at the top of this file).
// Errors wrap ErrUnauthorized, ErrRejected or errNoSuchServer where they apply.
func (s *Scalelite) call(ctx context.Context, method, action string, query url.Values, in any) (answer, error) {
	what := s.what(action)
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return answer{}, fmt.Errorf("%s: %w", what, err)
		}
	}
	target := s.base + "/" + action + "?" + bbb.SignQuery(s.alg, action, query.Encode(), s.secret)
	ans, err := s.ep.do(ctx, what, func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		if in != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Accept", "application/json")
		return req, nil
	})
	if err != nil {
		return answer{}, err
	}
	s.mu.Lock()
	secrets := []string{s.secret, s.bbbSecret}
	s.mu.Unlock()
	if failed, ok := bbbFailure(ans.body); ok {
		msg := cleanMessage(failed.MessageKey+": "+failed.Message, secrets...)
		switch failed.MessageKey {
		case "checksumError":
			return answer{}, fmt.Errorf("%s: %w (%s): check the load balancer secret and LOADBALANCER_CHECKSUM_ALGORITHM", what, ErrUnauthorized, msg)
		case "unsupportedRequest":
			return answer{}, fmt.Errorf("%s: %w (%s): the server management API needs Scalelite 1.5.1 or later", what, ErrRejected, msg)
		}
		return answer{}, fmt.Errorf("%s: Scalelite failed (%s)", what, msg)
	}
	if ans.status/100 == 2 {
		return ans, nil
	}
	msg := cleanMessage(jsonMessage(ans.body), secrets...)
	switch {
	case ans.status == http.StatusUnauthorized || ans.status == http.StatusForbidden:
		return answer{}, fmt.Errorf("%s: %w (HTTP %d%s)", what, ErrUnauthorized, ans.status, prefixed(msg))
	case ans.status == http.StatusNotFound && json.Valid(ans.body):
		return answer{}, fmt.Errorf("%s: %w%s", what, errNoSuchServer, prefixed(msg))
	case ans.status == http.StatusNotFound:
		return answer{}, fmt.Errorf("%s: HTTP 404 (%s): no Scalelite server API here; is %s right?", what, ans.describe(), s.shown)
	case rejected(ans.status):
		return answer{}, fmt.Errorf("%s: %w (HTTP %d%s)", what, ErrRejected, ans.status, prefixed(msg))
	}
	return answer{}, ans.unexpected(what, msg)
}

// bbbResponse is BBB's XML answer, which Scalelite uses for its errors.
type bbbResponse struct {
	XMLName    xml.Name `xml:"response"`
	ReturnCode string   `xml:"returncode"`
	MessageKey string   `xml:"messageKey"`
	Message    string   `xml:"message"`
}

// bbbFailure reads a BBB-style FAILED answer.
func bbbFailure(body []byte) (bbbResponse, bool) {
	if !bytes.HasPrefix(bytes.TrimSpace(body), []byte("<")) {
		return bbbResponse{}, false
	}
	var r bbbResponse
	if xml.Unmarshal(body, &r) != nil || r.ReturnCode != "FAILED" {
		return bbbResponse{}, false
	}
	return r, true
}

// jsonMessage pulls the error message out of a JSON error body.
func jsonMessage(body []byte) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	for _, key := range []string{"error", "message", "errors"} {
		raw, ok := m[key]
		if !ok {
			continue
		}
		var text string
		if json.Unmarshal(raw, &text) == nil {
			return text
		}
		return string(raw)
	}
	return ""
}
