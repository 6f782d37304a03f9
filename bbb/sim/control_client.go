package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// maxControlAnswer bounds how much of a control API answer ControlClient reads.
const maxControlAnswer = 32 << 20

// ControlClient calls a simulator's control API over HTTP, for tests that run
// bbb-sim as a process or behind an HTTP server. Its methods are the Server's
// control methods; an error the simulator answers is a *ControlError, which
// matches ErrNoMeeting or ErrInvalid with errors.Is as the Server's would.
// It is the test harness's client (simtest, the agent's benchmarks), so no
// command reaches it: a deliberate test seam.
type ControlClient struct {
	base string
	http *http.Client
}

// NewControlClient returns a client for the simulator at baseURL, the URL
// bbb-sim prints (e.g. http://127.0.0.1:41234). A nil httpClient means
// http.DefaultClient; the context of each call bounds it as well.
func NewControlClient(baseURL string, httpClient *http.Client) *ControlClient {
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	return &ControlClient{base: strings.TrimRight(baseURL, "/"), http: httpClient}
}

// ControlError is an error answer of the control API.
type ControlError struct {
	Method, Path string // the request, e.g. POST /sim/attendees
	StatusCode   int
	// Message is the answer's {"error": ...}, or the start of the body when
	// the answer is not such a document.
	Message string
}

func (e *ControlError) Error() string {
	return fmt.Sprintf("bbb-sim %s %s: %s (HTTP %d)", e.Method, e.Path, e.Message, e.StatusCode)
}

// Unwrap gives ErrNoMeeting for an unknown meeting and ErrInvalid for a
// refused request, so that errors.Is tells them apart as for the Server.
func (e *ControlError) Unwrap() error {
	switch {
	case e.StatusCode == http.StatusNotFound && strings.HasPrefix(e.Message, ErrNoMeeting.Error()):
		return ErrNoMeeting
	case e.StatusCode == http.StatusBadRequest:
		return ErrInvalid
	}
	return nil
}

// State returns the simulator's snapshot: meetings (ended ones included),
// recordings, request counters and faults.
func (c *ControlClient) State(ctx context.Context) (State, error) {
	var st State
	return st, c.call(ctx, http.MethodGet, "/sim/state", nil, &st)
}

// Reset returns the simulator to its state after start-up.
func (c *ControlClient) Reset(ctx context.Context) error {
	return c.call(ctx, http.MethodPost, "/sim/reset", nil, nil)
}

// AddAttendees joins synthetic users to an active meeting and returns their userIDs.
func (c *ControlClient) AddAttendees(ctx context.Context, meetingID string, spec AttendeeSpec) ([]string, error) {
	return c.postForIDs(ctx, "/sim/attendees", "userIDs", struct {
		MeetingID string `json:"meetingID"`
		AttendeeSpec
	}{meetingID, spec})
}

// RemoveAttendees makes the n most recent attendees of an active meeting
// leave (AllAttendees: everyone) and returns how many left.
func (c *ControlClient) RemoveAttendees(ctx context.Context, meetingID string, n int) (int, error) {
	in := struct {
		MeetingID string `json:"meetingID"`
		Count     int    `json:"count,omitempty"`
		All       bool   `json:"all,omitempty"`
	}{MeetingID: meetingID, Count: n}
	if n == AllAttendees {
		in.Count, in.All = 0, true
	}
	var out struct {
		Removed int `json:"removed"`
	}
	err := c.call(ctx, http.MethodPost, "/sim/attendees/remove", in, &out)
	return out.Removed, err
}

// AddBreakouts opens breakout rooms in an active meeting and returns their meetingIDs.
func (c *ControlClient) AddBreakouts(ctx context.Context, meetingID string, spec BreakoutSpec) ([]string, error) {
	return c.postForIDs(ctx, "/sim/breakouts", "meetingIDs", struct {
		MeetingID string `json:"meetingID"`
		BreakoutSpec
	}{meetingID, spec})
}

// postForIDs posts in and returns the IDs the answer lists under key.
func (c *ControlClient) postForIDs(ctx context.Context, path, key string, in any) ([]string, error) {
	var out map[string][]string
	err := c.call(ctx, http.MethodPost, path, in, &out)
	return out[key], err
}

// EndMeeting ends an active meeting and its breakout rooms: naturally (it
// disappears at once) or as by the end call.
func (c *ControlClient) EndMeeting(ctx context.Context, meetingID string, natural bool) error {
	in := struct {
		MeetingID string `json:"meetingID"`
		Natural   bool   `json:"natural"`
	}{meetingID, natural}
	return c.call(ctx, http.MethodPost, "/sim/end", in, nil)
}

// SetLatency delays every API request by d; 0 removes the delay. It returns
// the faults in force after the change.
func (c *ControlClient) SetLatency(ctx context.Context, d time.Duration) (Faults, error) {
	in := struct {
		Latency Duration `json:"latency"`
	}{Duration(d)}
	var f Faults
	return f, c.call(ctx, http.MethodPost, "/sim/latency", in, &f)
}

// SetFailureRate makes a fraction rate (0..1) of API requests fail the given
// way (empty: FailHTTP500). It returns the faults in force after the change.
func (c *ControlClient) SetFailureRate(ctx context.Context, rate float64, mode FailureMode) (Faults, error) {
	in := struct {
		Rate float64     `json:"rate"`
		Mode FailureMode `json:"mode,omitempty"`
	}{rate, mode}
	var f Faults
	return f, c.call(ctx, http.MethodPost, "/sim/failures", in, &f)
}

// SetAnswering stops (refuse, hang) or resumes (normal) answering API
// requests. It returns the faults in force after the change.
func (c *ControlClient) SetAnswering(ctx context.Context, mode AnswerMode) (Faults, error) {
	in := struct {
		Mode AnswerMode `json:"mode"`
	}{mode}
	var f Faults
	return f, c.call(ctx, http.MethodPost, "/sim/answering", in, &f)
}

// call sends in (nil: no body) as JSON and decodes a 200 answer into out
// (nil: the answer is read and dropped).
func (c *ControlClient) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("bbb-sim %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("bbb-sim control API: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("bbb-sim control API: %w", err) // the method and URL are in err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxControlAnswer+1))
	switch {
	case err != nil:
		return fmt.Errorf("bbb-sim %s %s: reading the answer (HTTP %d): %w", method, path, resp.StatusCode, err)
	case len(data) > maxControlAnswer:
		return fmt.Errorf("bbb-sim %s %s: the answer (HTTP %d) is larger than %d bytes", method, path, resp.StatusCode, maxControlAnswer)
	case resp.StatusCode != http.StatusOK:
		return &ControlError{Method: method, Path: path, StatusCode: resp.StatusCode, Message: errorMessage(data)}
	case out == nil:
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("bbb-sim %s %s: the answer is not the expected JSON: %w", method, path, err)
	}
	return nil
}

// errorMessage is the message of an error answer: its {"error": ...}, or
// else the start of the body.
func errorMessage(data []byte) string {
	var e errorBody
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return e.Error
	}
	const most = 200
	s := strings.TrimSpace(string(data))
	if len(s) > most {
		s = strings.ToValidUTF8(s[:most], "") + "…"
	}
	if s == "" {
		s = "empty answer"
	}
	return s
}
