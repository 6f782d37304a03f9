// Package autoscaling is an EMULATION of the Amazon EC2 Auto Scaling API for
// tests: an http.Handler that speaks the API's AWS Query wire protocol (form
// POST, XML answers in the 2011-01-01 namespace) for the two lifecycle hook
// actions bbb-agent uses, CompleteLifecycleAction and
// RecordLifecycleActionHeartbeat, so that the real aws-sdk-go-v2 client can
// talk to it. It records every call and can be told to throttle. It is not the
// real service, checks no signature and runs only on loopback.
package autoscaling

import (
	"crypto/rand"
	"encoding/xml"
	"fmt"
	"net/http"
	"sync"
)

// Namespace is the XML namespace of every Auto Scaling answer.
const Namespace = "http://autoscaling.amazonaws.com/doc/2011-01-01/"

// APIVersion is the only Version the emulation accepts.
const APIVersion = "2011-01-01"

// The lifecycle hook actions the emulation answers.
const (
	ActionComplete  = "CompleteLifecycleAction"
	ActionHeartbeat = "RecordLifecycleActionHeartbeat"
)

// The error codes the emulation answers with (the real service's codes).
const (
	CodeThrottling      = "Throttling"
	CodeValidationError = "ValidationError"
	CodeInvalidAction   = "InvalidAction"
	CodeMissingAuth     = "MissingAuthenticationToken"
)

// Call is one request the emulation received, as it understood it.
type Call struct {
	Action     string
	Group      string // AutoScalingGroupName
	Hook       string // LifecycleHookName
	InstanceID string // InstanceId
	Token      string // LifecycleActionToken
	Result     string // LifecycleActionResult (CompleteLifecycleAction only)
	Error      string // the error code answered, "" when the call succeeded
}

// action names one lifecycle action: an instance waiting at a hook of a group.
type action struct{ group, hook, instanceID string }

// Server is the emulated Auto Scaling API. The zero value is not usable; call
// New.
type Server struct {
	mu       sync.Mutex
	active   map[action]bool
	calls    []Call
	throttle int
}

// New returns an emulation with no active lifecycle action.
func New() *Server {
	return &Server{active: map[action]bool{}}
}

// StartAction puts instanceID into the wait state of hook in group, as a
// scale-in does: heartbeats and one completion are accepted for it until it
// is completed. Any other instance answers ValidationError "No active
// Lifecycle Action found with instance ID ...".
func (s *Server) StartAction(group, hook, instanceID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active[action{group, hook, instanceID}] = true
}

// Throttle makes the next n requests, whatever their action, answer
// Throttling ("Rate exceeded") without effect.
func (s *Server) Throttle(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttle = n
}

// Calls returns every request received so far, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// ServeHTTP answers one AWS Query request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, CodeInvalidAction, "the emulation answers POST only")
		return
	}
	if r.Header.Get("Authorization") == "" {
		writeError(w, http.StatusForbidden, CodeMissingAuth, "Request is missing Authentication Token")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, CodeValidationError, "malformed form body: "+err.Error())
		return
	}
	call := Call{
		Action:     r.PostForm.Get("Action"),
		Group:      r.PostForm.Get("AutoScalingGroupName"),
		Hook:       r.PostForm.Get("LifecycleHookName"),
		InstanceID: r.PostForm.Get("InstanceId"),
		Token:      r.PostForm.Get("LifecycleActionToken"),
		Result:     r.PostForm.Get("LifecycleActionResult"),
	}

	s.mu.Lock()
	status, code, message := s.handle(call, r.PostForm.Get("Version"))
	call.Error = code
	s.calls = append(s.calls, call)
	s.mu.Unlock()

	if code != "" {
		writeError(w, status, code, message)
		return
	}
	writeResult(w, call.Action)
}

// handle applies one call; it answers the HTTP status, error code and message
// of a failure, or an empty code on success. s.mu is held.
func (s *Server) handle(c Call, version string) (int, string, string) {
	if version != APIVersion || (c.Action != ActionComplete && c.Action != ActionHeartbeat) {
		return http.StatusBadRequest, CodeInvalidAction,
			fmt.Sprintf("Could not find operation %s for version %s", c.Action, version)
	}
	if s.throttle > 0 {
		s.throttle--
		return http.StatusBadRequest, CodeThrottling, "Rate exceeded"
	}
	for _, p := range []struct{ name, value string }{
		{"autoScalingGroupName", c.Group}, {"lifecycleHookName", c.Hook},
	} {
		if p.value == "" {
			return http.StatusBadRequest, CodeValidationError, fmt.Sprintf(
				"1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", p.name)
		}
	}
	if c.Action == ActionComplete && c.Result != "CONTINUE" && c.Result != "ABANDON" {
		return http.StatusBadRequest, CodeValidationError,
			fmt.Sprintf("Invalid lifecycle action result %q: it must be CONTINUE or ABANDON", c.Result)
	}
	if c.InstanceID == "" {
		// Actions are known here by instance; a token alone finds none.
		return http.StatusBadRequest, CodeValidationError, "No active Lifecycle Action found with token " + c.Token
	}
	a := action{c.Group, c.Hook, c.InstanceID}
	if !s.active[a] {
		return http.StatusBadRequest, CodeValidationError, "No active Lifecycle Action found with instance ID " + c.InstanceID
	}
	if c.Action == ActionComplete {
		delete(s.active, a)
	}
	return http.StatusOK, "", ""
}

// response is the success document of both actions: an empty <Action>Result
// and the request id, in the Auto Scaling namespace.
type response struct {
	XMLName   xml.Name
	Xmlns     string `xml:"xmlns,attr"`
	Result    struct{ XMLName xml.Name }
	RequestID string `xml:"ResponseMetadata>RequestId"`
}

// errorResponse is the AWS Query error document.
type errorResponse struct {
	XMLName xml.Name `xml:"ErrorResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Error   struct {
		Type    string
		Code    string
		Message string
	}
	RequestID string `xml:"RequestId"`
}

func writeResult(w http.ResponseWriter, act string) {
	doc := response{XMLName: xml.Name{Local: act + "Response"}, Xmlns: Namespace, RequestID: requestID()}
	doc.Result.XMLName = xml.Name{Local: act + "Result"}
	writeXML(w, http.StatusOK, doc)
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	doc := errorResponse{Xmlns: Namespace, RequestID: requestID()}
	doc.Error.Type = "Sender"
	doc.Error.Code = code
	doc.Error.Message = message
	writeXML(w, status, doc)
}

func writeXML(w http.ResponseWriter, status int, doc any) {
	body, err := xml.Marshal(doc)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(body)
}

// requestID returns a fresh request id in the service's UUID form.
func requestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
