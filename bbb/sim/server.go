package sim

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
)

// Defaults applied by New to a zero Config field.
const (
	DefaultBBBVersion        = "3.0.4"
	DefaultRecordingFileSize = 64 << 10
	DefaultMaxHang           = 30 * time.Second
)

// MaxBodyBytes bounds the body of an API POST (create, insertDocument).
const MaxBodyBytes = 2 << 20

// Config configures a simulated BBB server.
type Config struct {
	// Secret is the shared secret (bbb-web's securitySalt).
	Secret string
	// Secrets are further secrets accepted beside Secret, as during a rotation.
	Secrets []string
	// AllowedAlgorithms limits the checksum algorithms; empty allows all four.
	AllowedAlgorithms []bbb.Algorithm
	// RecordingsDir plays /var/bigbluebutton: recordings are written under it
	// and read back from it by New. Empty keeps recordings in memory only.
	RecordingsDir string
	// ClientURL is the HTML5 client's join URL that join redirects to, with
	// ?sessionToken=... appended. Empty means http://HOST/html5client/join,
	// HOST being the request's Host.
	ClientURL string
	// BBBVersion is the bbbVersion the API root reports; empty means DefaultBBBVersion.
	BBBVersion string
	// Clock is the time source; nil means time.Now.
	Clock func() time.Time
	// Seed makes generated IDs, passwords and tokens repeatable; 0 picks a random seed.
	Seed uint64
	// RecordingFileSize is the size in bytes of each media file of a recording
	// (webcams, deskshare); a slide is a quarter of it and a thumbnail a
	// sixteenth. 0 means DefaultRecordingFileSize.
	RecordingFileSize int64
	// MaxHang bounds how long the "hang" answering mode holds a request;
	// 0 means DefaultMaxHang.
	MaxHang time.Duration
	// Logger receives the server's logs; nil discards them. Secrets are never logged.
	Logger *slog.Logger
}

// Server is a simulated BBB server. It is an http.Handler serving the BBB API
// under /bigbluebutton/api/ and the control API under /sim/. It is safe for
// concurrent use.
type Server struct {
	cfg      Config
	verifier bbb.Verifier
	now      func() time.Time
	log      *slog.Logger
	control  *http.ServeMux

	// requests counts API requests per endpoint index (see counterIndex).
	requests [numEndpoints + 2]atomic.Int64

	faultMu sync.Mutex
	faults  Faults
	release chan struct{} // closed and replaced when the faults change

	rngMu sync.Mutex
	rng   *rand.Rand

	mu       sync.RWMutex
	meetings map[string]*meeting // current incarnation by external meetingID
	// Indexes of the active (not ended) meetings, so that create, end and
	// join cost the same with 30,000 meetings as with 3.
	byVoiceBridge map[string]*meeting
	byInternalID  map[string]*meeting

	recMu      sync.Mutex // guards recordings and the files under RecordingsDir
	recordings map[string]*recordingXML
}

// New returns a server for cfg. It reads the recordings already under
// cfg.RecordingsDir, so a restarted simulator lists what it published before.
func New(cfg Config) *Server {
	if cfg.BBBVersion == "" {
		cfg.BBBVersion = DefaultBBBVersion
	}
	if cfg.RecordingFileSize <= 0 {
		cfg.RecordingFileSize = DefaultRecordingFileSize
	}
	if cfg.MaxHang <= 0 {
		cfg.MaxHang = DefaultMaxHang
	}
	s := &Server{
		cfg:      cfg,
		verifier: bbb.Verifier{Secrets: append([]string{cfg.Secret}, cfg.Secrets...), Allowed: cfg.AllowedAlgorithms},
		now:      cfg.Clock,
		log:      cfg.Logger,
		release:  make(chan struct{}),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s.faults = defaultFaults()
	s.control = s.controlMux()
	s.resetState()
	return s
}

// resetState empties the meetings and reloads the recordings from disk.
func (s *Server) resetState() {
	s.mu.Lock()
	s.meetings = make(map[string]*meeting)
	s.byVoiceBridge = make(map[string]*meeting)
	s.byInternalID = make(map[string]*meeting)
	s.mu.Unlock()
	s.recMu.Lock()
	s.recordings = s.scanRecordings()
	s.recMu.Unlock()
}

// ServeHTTP routes the BBB API and the control API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/bigbluebutton/api" || p == "/bigbluebutton/api/":
		s.serveAPI(w, r, "")
	case strings.HasPrefix(p, "/bigbluebutton/api/"):
		s.serveAPI(w, r, p[len("/bigbluebutton/api/"):])
	case strings.HasPrefix(p, "/sim/"):
		s.control.ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

// endpoint describes one API call.
type endpoint struct {
	name      string
	get, post bool
	body      bool // a POST carries an XML <modules> body
	handle    func(*Server, *apiRequest)
}

// numEndpoints is len(endpoints), spelled out because Server's counters need it.
const numEndpoints = 12

// endpoints are the calls the simulator serves. The methods follow bbb-web.
var endpoints = [numEndpoints]endpoint{
	{name: bbb.CallCreate, get: true, post: true, body: true, handle: (*Server).create},
	{name: bbb.CallJoin, get: true, handle: (*Server).join},
	{name: bbb.CallEnd, get: true, post: true, handle: (*Server).end},
	{name: bbb.CallIsMeetingRunning, get: true, post: true, handle: (*Server).isMeetingRunning},
	{name: bbb.CallGetMeetingInfo, get: true, post: true, handle: (*Server).getMeetingInfo},
	{name: bbb.CallGetMeetings, get: true, post: true, handle: (*Server).getMeetings},
	{name: bbb.CallInsertDocument, post: true, body: true, handle: (*Server).insertDocument},
	{name: bbb.CallSendChatMessage, get: true, post: true, handle: (*Server).sendChatMessage},
	{name: bbb.CallGetRecordings, get: true, post: true, handle: (*Server).getRecordings},
	{name: bbb.CallPublishRecordings, get: true, handle: (*Server).publishRecordings},
	{name: bbb.CallUpdateRecordings, get: true, post: true, handle: (*Server).updateRecordings},
	{name: bbb.CallDeleteRecordings, get: true, handle: (*Server).deleteRecordings},
}

// Counter names beside the call names.
const (
	counterRoot    = "root"
	counterUnknown = "unknown"
)

// counterIndex returns the request counter of a call: an endpoint's index,
// then root, then every unknown call.
func counterIndex(call string) int {
	if call == "" {
		return len(endpoints)
	}
	for i := range endpoints {
		if endpoints[i].name == call {
			return i
		}
	}
	return len(endpoints) + 1
}

func counterName(i int) string {
	switch {
	case i < len(endpoints):
		return endpoints[i].name
	case i == len(endpoints):
		return counterRoot
	}
	return counterUnknown
}

// apiRequest is one verified API call on its way to its handler.
type apiRequest struct {
	w      http.ResponseWriter
	r      *http.Request
	params url.Values
	body   []byte
}

func (q *apiRequest) get(key string) string { return q.params.Get(key) }

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, call string) {
	idx := counterIndex(call)
	s.requests[idx].Add(1)
	if !s.injectFaults(w, r) {
		return
	}
	if call == "" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			s.fail(w, methodError("the API root", r.Method, "GET"))
			return
		}
		s.respond(w, bbb.RootResponse{ReturnCode: bbb.ReturnSuccess, Version: "2.0", APIVersion: "2.0", BBBVersion: s.cfg.BBBVersion})
		return
	}
	if idx >= len(endpoints) {
		s.fail(w, bbb.UnsupportedError(call))
		return
	}
	ep := &endpoints[idx]
	switch {
	case (r.Method == http.MethodGet || r.Method == http.MethodHead) && ep.get, r.Method == http.MethodPost && ep.post:
	default:
		s.fail(w, methodError("the "+call+" call", r.Method, ep.methods()))
		return
	}
	query, err := s.verifier.Verify(call, r.URL.RawQuery)
	if err != nil {
		msg := "Checksums do not match"
		if !errors.Is(err, bbb.ErrChecksumMismatch) {
			msg = "You did not pass the checksum security check: " + err.Error()
		}
		s.fail(w, bbb.NewError(bbb.KeyChecksumError, msg))
		return
	}
	params, err := url.ParseQuery(query)
	if err != nil {
		s.fail(w, bbb.NewError(bbb.KeyValidationError, "The query string is malformed: "+err.Error()))
		return
	}
	q := &apiRequest{w: w, r: r, params: params}
	if r.Method == http.MethodPost && ep.body {
		q.body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				s.fail(w, bbb.NewError(bbb.KeyRequestTooLarge, fmt.Sprintf("The request body exceeds %d bytes.", MaxBodyBytes)))
				return
			}
			s.fail(w, bbb.NewError(bbb.KeyValidationError, "Reading the request body failed: "+err.Error()))
			return
		}
	}
	ep.handle(s, q)
}

func (ep *endpoint) methods() string {
	switch {
	case ep.get && ep.post:
		return "GET or POST"
	case ep.get:
		return "GET"
	}
	return "POST"
}

func methodError(what, method, allowed string) *bbb.APIError {
	return bbb.NewError(bbb.KeyUnsupportedRequest, fmt.Sprintf("HTTP method %s is not allowed for %s; use %s.", method, what, allowed))
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// encode renders v as an API response document into a pooled buffer that
// send gives back. Handlers encode while they hold a lock and send after.
func (s *Server) encode(v any) *bytes.Buffer {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	if err := bbb.WriteXML(buf, v); err != nil {
		s.log.Error("encoding an API response failed", "err", err)
		buf.Reset()
		_ = bbb.WriteXML(buf, bbb.FailedResponse(bbb.NewError(bbb.KeyInternalError, "The response could not be encoded.")))
	}
	return buf
}

// send answers an encoded document as BBB does: HTTP 200, text/xml, no caching.
func send(w http.ResponseWriter, buf *bytes.Buffer) {
	h := w.Header()
	h.Set("Content-Type", "text/xml;charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
	if buf.Cap() <= 1<<20 {
		bufPool.Put(buf)
	}
}

// respond answers v.
func (s *Server) respond(w http.ResponseWriter, v any) { send(w, s.encode(v)) }

// fail answers a FAILED envelope with HTTP 200, as BBB does.
func (s *Server) fail(w http.ResponseWriter, err *bbb.APIError) {
	s.respond(w, bbb.FailedResponse(err))
}

// Random identifiers, drawn from the seeded generator.

const (
	alnum      = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	lowerAlnum = "abcdefghijklmnopqrstuvwxyz0123456789"
)

func (s *Server) randString(alphabet string, n int) string {
	b := make([]byte, n)
	s.rngMu.Lock()
	for i := range b {
		b[i] = alphabet[s.rng.IntN(len(alphabet))]
	}
	s.rngMu.Unlock()
	return string(b)
}

func (s *Server) randIntN(n int) int {
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return s.rng.IntN(n)
}

func (s *Server) randFloat() float64 {
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return s.rng.Float64()
}
