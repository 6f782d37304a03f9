package registrar

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/fleet"
	"github.com/bbb-agent/bbb-agent/internal/fsutil"
)

// Balancer is a Registrar for bbb-balancer's agent API (/agent/v1/, JSON,
// "Authorization: Bearer <credential>"). With a credential file it sends the
// node's own credential on every call once it has one, and the agent token
// only to register a node that has none yet. It is safe for concurrent use.
type Balancer struct {
	base     string // scheme://host[:port][/prefix], no trailing slash
	shown    string // base as it may appear in messages
	token    string
	ep       endpoint
	credFile string // "" : no node credential (older behaviour)
	takeover bool
	run      string // this process's run ID, sent with every report
	stream   reportStream

	mu        sync.Mutex
	node      string // the registered node name, kept for later calls
	secret    string // the registered BBB secret, cut out of quoted messages
	cred      string // the node's own credential, "" until it has one
	persisted bool   // cred is in credFile
}

// NewBalancer returns a Registrar for the bbb-balancer at baseURL (e.g.
// https://lb.example.com) that authenticates with agentToken.
func NewBalancer(baseURL, agentToken string, opts ...Option) (*Balancer, error) {
	u, err := parseBaseURL("bbb-balancer", baseURL)
	if err != nil {
		return nil, err
	}
	if agentToken == "" {
		return nil, errors.New("registrar: no agent token: give the token bbb-balancer serve was started with (--agent-token)")
	}
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	b := &Balancer{base: u.String(), shown: u.Redacted(), token: agentToken,
		ep: endpoint{client: o.client, timeout: o.timeout}, credFile: o.credFile, takeover: o.takeover, run: newRunID()}
	b.stream.off = o.noStream
	if b.credFile != "" {
		raw, err := os.ReadFile(b.credFile)
		switch {
		case err == nil:
			b.cred, b.persisted = strings.TrimSpace(string(raw)), true
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("registrar: reading the node credential: %w: fix the state directory's permissions", err)
		}
	}
	return b, nil
}

func newRunID() string {
	b := make([]byte, 8)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// bearer is what the calls authenticate with: the node's credential once it
// has one, else the agent token.
func (b *Balancer) bearer() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cred != "" {
		return b.cred
	}
	return b.token
}

// keepCredential stores a credential the balancer answered: in memory at
// once (so the next call uses it even if the file cannot be written) and in
// the credential file, mode 0600.
func (b *Balancer) keepCredential(cred string) error {
	b.mu.Lock()
	if cred != "" {
		b.cred, b.persisted = cred, false
	}
	cred, done := b.cred, b.persisted
	b.mu.Unlock()
	if done || cred == "" || b.credFile == "" {
		return nil
	}
	err := os.MkdirAll(filepath.Dir(b.credFile), 0o700)
	if err == nil {
		err = fsutil.WriteFile(b.credFile, []byte(cred+"\n"), 0o600)
	}
	if err != nil {
		return fmt.Errorf("registrar: keeping the node credential: %w: fix the state directory (the credential is kept in memory until then)", err)
	}
	b.mu.Lock()
	if b.cred == cred {
		b.persisted = true
	}
	b.mu.Unlock()
	return nil
}

// Kind returns "balancer".
func (b *Balancer) Kind() string { return "balancer" }

// Register upserts the node by name and keeps the name for later calls. The
// balancer keeps the admin state a known node already has.
func (b *Balancer) Register(ctx context.Context, r Registration) (fleet.AdminState, error) {
	req := agentapi.RegisterRequest{
		Node: r.Node, URL: r.URL, Secret: r.Secret, Role: string(r.Role), Tags: r.Tags, TURNURIs: r.TURNURIs,
		LoadMultiplier: r.LoadMultiplier, AgentVersion: r.AgentVersion,
		ReportIntervalSeconds: r.ReportInterval.Seconds(),
		NodeCredential:        b.credFile != "", Takeover: b.takeover,
	}
	var resp agentapi.RegisterResponse
	err := b.call(ctx, agentapi.PathRegister, req, &resp, r.Secret)
	if errors.Is(err, ErrUnauthorized) && b.forgetCredential() {
		// The balancer no longer knows our credential: an operator removed
		// the node. Register it anew with the agent token.
		err = b.call(ctx, agentapi.PathRegister, req, &resp, r.Secret)
	}
	if err != nil {
		return "", err
	}
	st, err := b.state(agentapi.PathRegister, resp.State)
	if err != nil {
		return "", err
	}
	b.mu.Lock()
	b.node, b.secret = r.Node, r.Secret
	b.mu.Unlock()
	if err := b.keepCredential(resp.Credential); err != nil {
		return "", err
	}
	return st, nil
}

// forgetCredential drops a credential the balancer refused and says whether
// there was one.
func (b *Balancer) forgetCredential() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cred == "" {
		return false
	}
	b.cred, b.persisted = "", false
	return true
}

// Rotate replaces the node's credential with a new one from the balancer and
// keeps it in the credential file; the old one stops working at once.
func (b *Balancer) Rotate(ctx context.Context) error {
	node, err := b.registered()
	if err != nil {
		return err
	}
	b.mu.Lock()
	has := b.cred != ""
	b.mu.Unlock()
	if !has {
		return fmt.Errorf("%s: the node has no credential to rotate yet: register first (with a credential file)", b.what(agentapi.PathRotate))
	}
	var resp agentapi.RotateResponse
	if err := b.call(ctx, agentapi.PathRotate, agentapi.NodeRequest{Node: node}, &resp); err != nil {
		return err
	}
	if resp.Credential == "" {
		return fmt.Errorf("%s: the answer carries no credential", b.what(agentapi.PathRotate))
	}
	return b.keepCredential(resp.Credential)
}

// Report sends a load report. The reply carries the state the balancer wants
// (an operator's cordon) and the live TURN servers.
func (b *Balancer) Report(ctx context.Context, r Report) (Reply, error) {
	node, err := b.registered()
	if err != nil {
		return Reply{}, err
	}
	var resp agentapi.ReportResponse
	req := agentapi.ReportRequest{Node: node, Seq: r.Seq, Run: b.run, Load: r.Load, MeetingIDs: r.MeetingIDs, Leaving: r.Leaving}
	if err := b.call(ctx, agentapi.PathReport, req, &resp); err != nil {
		return Reply{}, err
	}
	st, err := b.state(agentapi.PathReport, resp.State)
	if err != nil {
		return Reply{}, err
	}
	return Reply{State: st, TURNServers: resp.TURNServers}, nil
}

// Cordon asks the balancer to place no new meetings on the node (drain).
func (b *Balancer) Cordon(ctx context.Context) error { return b.setState(ctx, agentapi.PathCordon) }

// Enable lets the node take new meetings again (undrain).
func (b *Balancer) Enable(ctx context.Context) error { return b.setState(ctx, agentapi.PathEnable) }

func (b *Balancer) setState(ctx context.Context, path string) error {
	node, err := b.registered()
	if err != nil {
		return err
	}
	var resp agentapi.StateResponse
	if err := b.call(ctx, path, agentapi.NodeRequest{Node: node}, &resp); err != nil {
		return err
	}
	_, err = b.state(path, resp.State)
	return err
}

// Deregister removes the node; a node the balancer no longer knows is
// already deregistered.
func (b *Balancer) Deregister(ctx context.Context) error {
	node, err := b.registered()
	if err != nil {
		return err
	}
	var resp agentapi.StateResponse
	err = b.call(ctx, agentapi.PathDeregister, agentapi.NodeRequest{Node: node}, &resp)
	if err == nil {
		b.stream.close() // the node is gone: it reports no more
	}
	return err
}

// Check asks the balancer's ping endpoint, which needs a valid token.
func (b *Balancer) Check(ctx context.Context) error {
	what := "registrar: bbb-balancer at " + b.shown + ": GET " + agentapi.PathPing
	ans, err := b.ep.do(ctx, what, func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base+agentapi.PathPing, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+b.bearer())
		return req, nil
	})
	switch {
	case err != nil:
		return err
	case ans.status == http.StatusNoContent:
		return nil
	case ans.status == http.StatusUnauthorized || ans.status == http.StatusForbidden:
		return fmt.Errorf("%s: %w (HTTP %d): give the token bbb-balancer serve --agent-token has", what, ErrUnauthorized, ans.status)
	case ans.status == http.StatusNotFound:
		return fmt.Errorf("%s: HTTP 404 (%s): no agent API here; is %s a bbb-balancer?", what, ans.describe(), b.shown)
	}
	return ans.unexpected(what, "")
}

func (b *Balancer) registered() (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.node == "" {
		return "", fmt.Errorf("registrar: bbb-balancer at %s: %w: register first", b.shown, ErrNotRegistered)
	}
	return b.node, nil
}

// state checks the admin state in an answer.
func (b *Balancer) state(path string, s fleet.AdminState) (fleet.AdminState, error) {
	st, err := fleet.ParseAdminState(string(s))
	if err != nil {
		return "", fmt.Errorf("%s: the answer carries no valid node state: %w", b.what(path), err)
	}
	return st, nil
}

func (b *Balancer) what(path string) string {
	return "registrar: bbb-balancer at " + b.shown + ": POST " + path
}

// call POSTs in as JSON to path and decodes a 2xx answer into out (nil:
// the answer's body is not read). Errors
// wrap ErrUnauthorized, ErrRejected or ErrNotRegistered where they apply.
// secrets are cut out of any message quoted from the balancer.
func (b *Balancer) call(ctx context.Context, path string, in, out any, secrets ...string) error {
	what := b.what(path)
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	bearer := b.bearer()
	ans, err := b.send(ctx, what, path, bearer, body)
	if err != nil {
		return err
	}
	if ans.status/100 == 2 {
		if out == nil {
			return nil // an answer without content (204)
		}
		if err := json.Unmarshal(ans.body, out); err != nil {
			return fmt.Errorf("%s: the answer is not the agent API's JSON (%s): %w", what, ans.describe(), err)
		}
		return nil
	}
	b.mu.Lock()
	secrets = append(secrets, b.secret, b.token, b.cred)
	b.mu.Unlock()
	var apiErr agentapi.Error
	if json.Unmarshal(ans.body, &apiErr) != nil {
		apiErr = agentapi.Error{}
	}
	msg := cleanMessage(apiErr.Error, secrets...)
	switch {
	case ans.status == http.StatusUnauthorized && bearer != b.token && path != agentapi.PathRegister:
		// The node's credential is gone: an operator removed the node, or
		// another agent took it over. Registering again tells which.
		return fmt.Errorf("%s: %w: the balancer no longer knows this node's credential (removed, or taken over)%s", what, ErrNotRegistered, prefixed(msg))
	case ans.status == http.StatusUnauthorized || ans.status == http.StatusForbidden:
		return fmt.Errorf("%s: %w (HTTP %d%s)", what, ErrUnauthorized, ans.status, prefixed(msg))
	case ans.status == http.StatusConflict && apiErr.Code == agentapi.CodeNodeConflict:
		return &ConflictError{What: what, Message: cleanMessageMax(apiErr.Error, maxConflictBytes, secrets...)}
	case ans.status == http.StatusNotFound && apiErr.Code == agentapi.CodeUnknownNode:
		return fmt.Errorf("%s: %w%s", what, ErrNotRegistered, prefixed(msg))
	case ans.status == http.StatusNotFound && apiErr.Code == "":
		return fmt.Errorf("%s: HTTP 404 (%s): no agent API here; is %s a bbb-balancer?", what, ans.describe(), b.shown)
	case rejected(ans.status):
		return fmt.Errorf("%s: %w (HTTP %d%s)", what, ErrRejected, ans.status, prefixed(msg))
	}
	return ans.unexpected(what, msg)
}

// send sends body to path and reads the answer. A report goes over the
// report stream where it can (stream.go); the rest, and a report that
// cannot, by POST.
func (b *Balancer) send(ctx context.Context, what, path, bearer string, body []byte) (answer, error) {
	if path == agentapi.PathReport {
		if ans, ok, err := b.stream.report(ctx, b, what, bearer, body); ok {
			return ans, err
		}
	}
	return b.ep.do(ctx, what, func(ctx context.Context) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.base+path, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+bearer)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		return req, nil
	})
}

// rejected says whether an HTTP status refuses the request itself, so that
// sending it again cannot help.
func rejected(status int) bool {
	switch status {
	case http.StatusBadRequest, http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

func prefixed(msg string) string {
	if msg = strings.TrimSpace(msg); msg == "" {
		return ""
	}
	return ": " + msg
}
