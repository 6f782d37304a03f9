package main

import (
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agent"
)

func TestParseDeadline(t *testing.T) {
	now := time.Date(2026, 12, 4, 20, 0, 0, 0, time.Local)
	for _, tt := range []struct {
		in   string
		at   time.Time
		dur  time.Duration
		fail string
	}{
		{in: "30m", dur: 30 * time.Minute},
		{in: "1h30m", dur: 90 * time.Minute},
		{in: "2026-12-04T21:30:00Z", at: time.Date(2026, 12, 4, 21, 30, 0, 0, time.UTC)},
		{in: "2026-12-04T21:30:00+01:00", at: time.Date(2026, 12, 4, 20, 30, 0, 0, time.UTC)},
		{in: "2026-12-04 21:30", at: time.Date(2026, 12, 4, 21, 30, 0, 0, time.Local)},
		{in: "21:30", at: time.Date(2026, 12, 4, 21, 30, 0, 0, time.Local)},
		{in: "19:30", at: time.Date(2026, 12, 5, 19, 30, 0, 0, time.Local)}, // passed today: tomorrow
		{in: "0s", fail: "after now"},
		{in: "-5m", fail: "after now"},
		{in: "soon", fail: "want a duration"},
	} {
		at, dur, err := parseDeadline(tt.in, now)
		switch {
		case tt.fail != "":
			if err == nil || !strings.Contains(err.Error(), tt.fail) {
				t.Errorf("%q: %v, want an error saying %q", tt.in, err, tt.fail)
			}
		case err != nil || !at.Equal(tt.at) || dur != tt.dur:
			t.Errorf("%q: %v %v %v, want %v %v", tt.in, at, dur, err, tt.at, tt.dur)
		}
	}
}

// TestDrainOutcome: drain --wait exits 0 when drained or leaving, and
// otherwise says what happened.
func TestDrainOutcome(t *testing.T) {
	deadline := time.Date(2026, 12, 4, 21, 30, 0, 0, time.UTC)
	for _, tt := range []struct {
		name  string
		drain *agent.DrainStatus
		out   string // printed on success
		err   string
	}{
		{name: "drained", drain: &agent.DrainStatus{Phase: "done", Finished: "no meetings left"}, out: "bbb1 is drained: no meetings left\n"},
		{name: "leaving", drain: &agent.DrainStatus{Phase: "leaving", MeetingsLeft: 1, Deadline: deadline}, out: "with 1 meeting running: it takes no new meetings"},
		{name: "deregistration failed", drain: &agent.DrainStatus{Phase: "done", Finished: "no meetings left", Error: "deregistration failed: x"}, err: "bbb1 is drained (no meetings left), but: deregistration failed"},
		{name: "cancelled", err: "the drain was cancelled"},
		{name: "agent stopped", drain: &agent.DrainStatus{Phase: "wait", MeetingsLeft: 2}, err: "the agent stopped before the drain finished (phase wait, 2 meetings left)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			err := drainOutcome(&out, agent.Status{Node: "bbb1", State: agent.Stopped, Drain: tt.drain})
			if tt.err == "" && (err != nil || !strings.Contains(out.String(), tt.out)) || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("%q %v, want %q / error %q", out.String(), err, tt.out, tt.err)
			}
		})
	}
	if got := drainProgress(agent.Status{Drain: &agent.DrainStatus{Phase: "wait", MeetingsLeft: 1, Deadline: deadline, Message: "draining: 1 meeting left"}}); !strings.HasPrefix(got, "wait: 1 meeting left (deadline 2026-12-04 ") {
		t.Errorf("progress line %q", got)
	}
}
