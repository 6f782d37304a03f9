package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// FailureMode is how a request picked by the failure rate fails.
type FailureMode string

// The failure modes.
const (
	// FailHTTP500 answers HTTP 500 with a plain-text body.
	FailHTTP500 FailureMode = "http500"
	// FailClose closes the connection without an answer.
	FailClose FailureMode = "close"
)

// AnswerMode is whether the simulator answers API requests at all.
type AnswerMode string

// The answering modes.
const (
	// AnswerNormal serves requests.
	AnswerNormal AnswerMode = "normal"
	// AnswerRefuse closes every connection at once, as a dead server would.
	AnswerRefuse AnswerMode = "refuse"
	// AnswerHang holds every request without an answer until the client gives
	// up, the mode changes (held requests are then served as the new mode
	// says), or Config.MaxHang passes (the connection is then closed).
	AnswerHang AnswerMode = "hang"
)

// Faults are the injected faults; they apply to /bigbluebutton/ requests
// only, never to the control API.
type Faults struct {
	Latency     Duration    `json:"latency"`
	FailureRate float64     `json:"failureRate"`
	FailureMode FailureMode `json:"failureMode"`
	Answering   AnswerMode  `json:"answering"`
}

func defaultFaults() Faults {
	return Faults{FailureMode: FailHTTP500, Answering: AnswerNormal}
}

// Duration is a time.Duration that reads and writes JSON as "250ms".
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a Go duration string such as "1.5s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"250ms\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// SetLatency delays every API request by d before it is served; 0 removes the delay.
func (s *Server) SetLatency(d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("%w: latency %s is negative", ErrInvalid, d)
	}
	s.changeFaults(func(f *Faults) { f.Latency = Duration(d) })
	return nil
}

// SetFailureRate makes a fraction rate (0..1) of API requests fail the given way.
func (s *Server) SetFailureRate(rate float64, mode FailureMode) error {
	if !(rate >= 0 && rate <= 1) {
		return fmt.Errorf("%w: failure rate %v is not between 0 and 1", ErrInvalid, rate)
	}
	if mode == "" {
		mode = FailHTTP500
	}
	if mode != FailHTTP500 && mode != FailClose {
		return fmt.Errorf("%w: failure mode %q: want %q or %q", ErrInvalid, mode, FailHTTP500, FailClose)
	}
	s.changeFaults(func(f *Faults) { f.FailureRate, f.FailureMode = rate, mode })
	return nil
}

// SetAnswering stops (refuse, hang) or resumes (normal) answering API requests.
func (s *Server) SetAnswering(mode AnswerMode) error {
	switch mode {
	case AnswerNormal, AnswerRefuse, AnswerHang:
	default:
		return fmt.Errorf("%w: answering mode %q: want %q, %q or %q", ErrInvalid, mode, AnswerNormal, AnswerRefuse, AnswerHang)
	}
	s.changeFaults(func(f *Faults) { f.Answering = mode })
	return nil
}

func (s *Server) changeFaults(change func(*Faults)) {
	s.faultMu.Lock()
	change(&s.faults)
	close(s.release)
	s.release = make(chan struct{})
	s.faultMu.Unlock()
}

func (s *Server) currentFaults() (Faults, <-chan struct{}) {
	s.faultMu.Lock()
	defer s.faultMu.Unlock()
	return s.faults, s.release
}

// injectFaults applies the current faults to an API request and reports
// whether the request should be served.
func (s *Server) injectFaults(w http.ResponseWriter, r *http.Request) bool {
	ctx := r.Context()
	var deadline <-chan time.Time
	for {
		f, changed := s.currentFaults()
		switch f.Answering {
		case AnswerRefuse:
			abort(w)
			return false
		case AnswerHang:
			if deadline == nil {
				t := time.NewTimer(s.cfg.MaxHang)
				defer t.Stop()
				deadline = t.C
			}
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return false
			case <-deadline:
				abort(w)
				return false
			}
		}
		if f.Latency > 0 && !sleep(ctx, time.Duration(f.Latency)) {
			return false
		}
		if f.FailureRate > 0 && s.randFloat() < f.FailureRate {
			if f.FailureMode == FailClose {
				abort(w)
			} else {
				http.Error(w, "bbb-sim: simulated failure", http.StatusInternalServerError)
			}
			return false
		}
		return true
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// abort closes the request's connection without an answer.
func abort(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	// http.Server recovers this value quietly and drops the connection.
	panic(http.ErrAbortHandler)
}
