// Package scalelite is an emulation of Scalelite's server management REST API
// (Scalelite 1.5.1+, /scalelite/api/...) as an http.Handler with its state in
// memory, for tests of code that registers BBB servers with Scalelite. It is
// built from Scalelite's documentation and issue tracker, not from its (AGPL)
// code; the wire facts and their sources are listed at the top of
// registrar/scalelite.go.
//
// What it emulates: getServers, getServerInfo, addServer, updateServer,
// deleteServer and panicServer, each checked with the BBB checksum scheme over
// the call name and the query string (never the JSON body) against the load
// balancer secrets, answering a bad or missing checksum with BBB's XML
// checksumError and HTTP 200, as Scalelite does. Servers added through the
// API start disabled and offline. Where the documentation is silent the
// emulation chooses, and says so: an unknown server id is a 404 with a JSON
// {"error"} body, an invalid request a 400 with one, an empty pool makes
// getServers answer 404 (a third-party client expects exactly that), and a
// call it does not serve (or a wrong method) gets BBB's XML unsupportedRequest.
// It has no poller: servers go online only through SetOnline, and a cordoned
// server is not disabled when its meetings end.
package scalelite

import (
	"crypto/rand"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// PathPrefix is where the API lives.
const PathPrefix = "/scalelite/api/"

// maxBodyBytes bounds a request body.
const maxBodyBytes = 1 << 20

// Config configures an Emulator the way Scalelite's environment does.
type Config struct {
	// Secrets are LOADBALANCER_SECRET and LOADBALANCER_SECRETS: a checksum
	// made with any of them passes.
	Secrets []string
	// Algorithms is LOADBALANCER_CHECKSUM_ALGORITHM; empty means Scalelite's
	// default: sha1, sha256 and sha512.
	Algorithms []bbb.Algorithm
	// IDIsHostname is SERVER_ID_IS_HOSTNAME=true: a server's id is its
	// hostname, which must then be unique, instead of a random UUID.
	IDIsHostname bool
}

// Server is one BBB server in the emulated pool.
type Server struct {
	ID             string
	URL            string
	Secret         string
	Tag            string
	State          fleet.AdminState
	LoadMultiplier float64
	Online         bool
	Load           float64
}

// Fault makes calls fail, for tests of the callers' error handling.
type Fault int

// The faults.
const (
	// NoFault serves calls normally.
	NoFault Fault = iota
	// InternalError answers HTTP 500 with an HTML page, as a crashed Rails
	// application behind its proxy does.
	InternalError
	// Unsupported answers BBB's XML unsupportedRequest, as a Scalelite
	// without the server management API does.
	Unsupported
	// Hang answers nothing until the client gives up.
	Hang
)

// Emulator is the emulated Scalelite. It is safe for concurrent use.
type Emulator struct {
	verifier bbb.Verifier
	idIsHost bool

	mu      sync.Mutex
	servers []*Server // in the order they were added
	calls   map[string]int
	faults  map[string]Fault // by call name; "" for every call
}

// New returns an empty Emulator.
func New(cfg Config) *Emulator {
	algs := cfg.Algorithms
	if len(algs) == 0 {
		algs = []bbb.Algorithm{bbb.SHA1, bbb.SHA256, bbb.SHA512}
	}
	return &Emulator{
		verifier: bbb.Verifier{Secrets: slices.Clone(cfg.Secrets), Allowed: algs},
		idIsHost: cfg.IDIsHostname,
		calls:    map[string]int{},
		faults:   map[string]Fault{},
	}
}

// Servers returns a snapshot of the pool, in the order servers were added.
func (e *Emulator) Servers() []Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Server, len(e.servers))
	for i, s := range e.servers {
		out[i] = *s
	}
	return out
}

// AddServer adds a server as an operator would (rake servers:add): disabled,
// offline, load multiplier 1.
func (e *Emulator) AddServer(apiURL, secret string) (Server, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, err := e.add(apiURL, secret, 0, "")
	if err != nil {
		return Server{}, err
	}
	return *s, nil
}

// SetState sets a server's state as an operator would (rake servers:cordon[ID], ...).
func (e *Emulator) SetState(id string, st fleet.AdminState) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.find(id)
	if s == nil {
		return fmt.Errorf("scalelite emulation: no server %q", id)
	}
	if _, err := fleet.ParseAdminState(string(st)); err != nil {
		return err
	}
	s.State = st
	return nil
}

// SetOnline plays Scalelite's poller finding a server up or down.
func (e *Emulator) SetOnline(id string, online bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.find(id)
	if s == nil {
		return fmt.Errorf("scalelite emulation: no server %q", id)
	}
	s.Online = online
	return nil
}

// Calls returns how many requests each call name received, refused ones included.
func (e *Emulator) Calls() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.calls))
	for k, v := range e.calls {
		out[k] = v
	}
	return out
}

// SetFault makes the call named action ("" for every call) fail with f until
// it is set back to NoFault. A fault strikes before the checksum is checked.
func (e *Emulator) SetFault(action string, f Fault) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if f == NoFault {
		delete(e.faults, action)
		return
	}
	e.faults[action] = f
}

// ServeHTTP serves /scalelite/api/<call>.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	action, ok := strings.CutPrefix(r.URL.Path, PathPrefix)
	if !ok || action == "" || strings.Contains(action, "/") {
		writeFailed(w, "unsupportedRequest", "This request is not supported.")
		return
	}
	e.mu.Lock()
	e.calls[action]++
	fault, ok := e.faults[action]
	if !ok {
		fault = e.faults[""]
	}
	e.mu.Unlock()
	switch fault {
	case InternalError:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "<!DOCTYPE html>\n<html><body><h1>Internal Server Error</h1></body></html>\n")
		return
	case Unsupported:
		writeFailed(w, "unsupportedRequest", "This request is not supported.")
		return
	case Hang:
		// Read the body first: only then does the server notice a client
		// that hangs up.
		_, _ = io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
		return
	}
	if _, err := e.verifier.Verify(action, r.URL.RawQuery); err != nil {
		writeFailed(w, "checksumError", "You did not pass the checksum security check")
		return
	}
	method, h := e.route(action)
	if h == nil || r.Method != method {
		writeFailed(w, "unsupportedRequest", "This request is not supported.")
		return
	}
	h(w, r)
}

// route returns the method and handler of a call, or a nil handler.
func (e *Emulator) route(action string) (string, http.HandlerFunc) {
	switch action {
	case "getServers":
		return http.MethodGet, e.getServers
	case "getServerInfo":
		return http.MethodGet, e.getServerInfo
	case "addServer":
		return http.MethodPost, e.addServer
	case "updateServer":
		return http.MethodPost, e.updateServer
	case "deleteServer":
		return http.MethodPost, e.deleteServer
	case "panicServer":
		return http.MethodPost, e.panicServer
	}
	return "", nil
}

func (e *Emulator) getServers(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.servers) == 0 {
		writeError(w, http.StatusNotFound, "No servers found")
		return
	}
	out := make([]serverJSON, len(e.servers))
	for i, s := range e.servers {
		out[i] = toJSON(s)
	}
	writeJSON(w, http.StatusOK, out)
}

func (e *Emulator) getServerInfo(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.find(id)
	if s == nil {
		writeError(w, http.StatusNotFound, "Server not found")
		return
	}
	writeJSON(w, http.StatusOK, toJSON(s))
}

// fieldsJSON is the "server" object of addServer, updateServer and panicServer.
type fieldsJSON struct {
	URL            *string  `json:"url"`
	Secret         *string  `json:"secret"`
	LoadMultiplier *float64 `json:"load_multiplier"`
	Tag            *string  `json:"tag"`
	State          *string  `json:"state"`
	KeepState      bool     `json:"keep_state"`
}

type requestJSON struct {
	ID     string     `json:"id"`
	Server fieldsJSON `json:"server"`
}

func (e *Emulator) addServer(w http.ResponseWriter, r *http.Request) {
	req, ok := decode(w, r)
	if !ok {
		return
	}
	f := req.Server
	if f.URL == nil || *f.URL == "" || f.Secret == nil || *f.Secret == "" {
		writeError(w, http.StatusBadRequest, "Server needs a URL and a secret")
		return
	}
	var lm float64
	if f.LoadMultiplier != nil {
		lm = *f.LoadMultiplier
	}
	var tag string
	if f.Tag != nil {
		tag = *f.Tag
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s, err := e.add(*f.URL, *f.Secret, lm, tag)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, toJSON(s))
}

func (e *Emulator) updateServer(w http.ResponseWriter, r *http.Request) {
	req, ok := decode(w, r)
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.find(req.ID)
	if s == nil {
		writeError(w, http.StatusNotFound, "Server not found")
		return
	}
	f := req.Server
	updated := *s
	if f.State != nil {
		switch *f.State {
		case "enable":
			updated.State = fleet.Enabled
		case "cordon":
			updated.State = fleet.Cordoned
		case "disable":
			updated.State = fleet.Disabled
		default:
			writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid state %q: use enable, cordon or disable", *f.State))
			return
		}
	}
	if f.LoadMultiplier != nil {
		if *f.LoadMultiplier == 0 {
			writeError(w, http.StatusBadRequest, "Load multiplier must be a non-zero number")
			return
		}
		updated.LoadMultiplier = *f.LoadMultiplier
	}
	if f.Secret != nil {
		updated.Secret = *f.Secret
	}
	if f.Tag != nil {
		updated.Tag = *f.Tag
	}
	*s = updated
	writeJSON(w, http.StatusOK, toJSON(s))
}

func (e *Emulator) deleteServer(w http.ResponseWriter, r *http.Request) {
	req, ok := decode(w, r)
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	i := slices.IndexFunc(e.servers, func(s *Server) bool { return s.ID == req.ID })
	if i < 0 {
		writeError(w, http.StatusNotFound, "Server not found")
		return
	}
	e.servers = slices.Delete(e.servers, i, i+1)
	writeJSON(w, http.StatusOK, map[string]string{"success": fmt.Sprintf("Server id=%s was destroyed", req.ID)})
}

// panicServer disables the server unless asked to keep its state; the
// emulation has no meetings to end.
func (e *Emulator) panicServer(w http.ResponseWriter, r *http.Request) {
	req, ok := decode(w, r)
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.find(req.ID)
	if s == nil {
		writeError(w, http.StatusNotFound, "Server not found")
		return
	}
	if !req.Server.KeepState {
		s.State = fleet.Disabled
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"success": fmt.Sprintf("Server id=%s has been disabled and the meetings have been destroyed", req.ID)})
}

// add adds a server; the caller holds e.mu.
func (e *Emulator) add(apiURL, secret string, lm float64, tag string) (*Server, error) {
	u, err := url.Parse(apiURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("Invalid server URL %q", apiURL)
	}
	id := newUUID()
	if e.idIsHost {
		id = u.Hostname()
		if e.find(id) != nil {
			return nil, fmt.Errorf("Server with hostname %s already exists", id)
		}
	}
	if lm == 0 {
		lm = 1
	}
	s := &Server{ID: id, URL: apiURL, Secret: secret, Tag: tag, State: fleet.Disabled, LoadMultiplier: lm}
	e.servers = append(e.servers, s)
	return s, nil
}

// find returns the server with the id, or nil; the caller holds e.mu.
func (e *Emulator) find(id string) *Server {
	for _, s := range e.servers {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// serverJSON is a server on the wire. Types follow what real answers carry
// (a third-party client's sample): load a number, load_multiplier and online
// strings, tag null when unset.
type serverJSON struct {
	ID             string  `json:"id"`
	URL            string  `json:"url"`
	Secret         string  `json:"secret"`
	Tag            *string `json:"tag"`
	State          string  `json:"state"`
	Load           float64 `json:"load"`
	LoadMultiplier string  `json:"load_multiplier"`
	Online         string  `json:"online"`
}

func toJSON(s *Server) serverJSON {
	out := serverJSON{ID: s.ID, URL: s.URL, Secret: s.Secret, State: string(s.State), Load: s.Load,
		LoadMultiplier: strconv.FormatFloat(s.LoadMultiplier, 'f', -1, 64), Online: "offline"}
	if !strings.Contains(out.LoadMultiplier, ".") {
		out.LoadMultiplier += ".0"
	}
	if s.Tag != "" {
		out.Tag = &s.Tag
	}
	if s.Online {
		out.Online = "online"
	}
	return out
}

func decode(w http.ResponseWriter, r *http.Request) (requestJSON, bool) {
	var req requestJSON
	err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes)).Decode(&req)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Invalid JSON body")
		return req, false
	}
	return req, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// writeFailed answers BBB's XML error with HTTP 200, as Scalelite does.
func writeFailed(w http.ResponseWriter, key, msg string) {
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, xml.Header)
	_ = xml.NewEncoder(w).Encode(struct {
		XMLName    xml.Name `xml:"response"`
		ReturnCode string   `xml:"returncode"`
		MessageKey string   `xml:"messageKey"`
		Message    string   `xml:"message"`
	}{ReturnCode: "FAILED", MessageKey: key, Message: msg})
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails: crypto/rand crashes the program instead
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
