package sim

import (
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// rawClient makes one fresh connection per request, so a closed connection
// is never retried on another.
func rawClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
}

// try sends a signed getMeetings and returns the HTTP status, or the transport error.
func (e *env) try(c *http.Client) (int, error) {
	resp, err := c.Get(e.signed(bbb.CallGetMeetings, nil))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func (e *env) count(call string) int64 { return e.sim.Stats().Requests[call] }

func TestLatency(t *testing.T) {
	e := newEnv(t)
	if err := e.sim.SetLatency(60 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if code, err := e.try(rawClient(5 * time.Second)); err != nil || code != http.StatusOK {
		t.Fatalf("HTTP %d, %v", code, err)
	}
	if took := time.Since(began); took < 60*time.Millisecond {
		t.Errorf("answered after %s, before the latency", took)
	}

	// A client that gives up first sees a timeout; the simulator saw the request.
	if err := e.sim.SetLatency(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := e.try(rawClient(30 * time.Millisecond)); err == nil {
		t.Error("a 30ms client got an answer despite 10s latency")
	}
	if n := e.count(bbb.CallGetMeetings); n != 2 {
		t.Errorf("counted %d getMeetings, want 2", n)
	}
	// The control API is never delayed.
	c := rawClient(2 * time.Second)
	resp, err := c.Get(e.ts.URL + "/sim/state")
	if err != nil {
		t.Fatalf("control API under latency: %v", err)
	}
	resp.Body.Close()
	if err := e.sim.SetLatency(0); err != nil {
		t.Fatal(err)
	}
}

func TestFailureRate(t *testing.T) {
	tests := []struct {
		name     string
		rate     float64
		mode     FailureMode
		requests int
		// want500 and wantClosed bound the outcomes: [min, max].
		want500, wantClosed [2]int
	}{
		{"never", 0, FailHTTP500, 5, [2]int{0, 0}, [2]int{0, 0}},
		{"always 500", 1, FailHTTP500, 5, [2]int{5, 5}, [2]int{0, 0}},
		{"always close", 1, FailClose, 5, [2]int{0, 0}, [2]int{5, 5}},
		{"default mode is 500", 1, "", 3, [2]int{3, 3}, [2]int{0, 0}},
		{"half", 0.5, FailHTTP500, 60, [2]int{10, 50}, [2]int{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if err := e.sim.SetFailureRate(tt.rate, tt.mode); err != nil {
				t.Fatal(err)
			}
			c := rawClient(5 * time.Second)
			n500, closed := 0, 0
			for range tt.requests {
				code, err := e.try(c)
				switch {
				case err != nil:
					closed++
				case code == http.StatusInternalServerError:
					n500++
				case code != http.StatusOK:
					t.Errorf("HTTP %d", code)
				}
			}
			if n500 < tt.want500[0] || n500 > tt.want500[1] || closed < tt.wantClosed[0] || closed > tt.wantClosed[1] {
				t.Errorf("%d HTTP 500 and %d closed of %d, want %v and %v", n500, closed, tt.requests, tt.want500, tt.wantClosed)
			}
			if got := e.count(bbb.CallGetMeetings); got != int64(tt.requests) {
				t.Errorf("counted %d requests, want %d", got, tt.requests)
			}
		})
	}
}

func TestAnsweringRefuse(t *testing.T) {
	e := newEnv(t)
	if err := e.sim.SetAnswering(AnswerRefuse); err != nil {
		t.Fatal(err)
	}
	c := rawClient(5 * time.Second)
	if _, err := e.try(c); err == nil {
		t.Fatal("a refusing simulator answered")
	}
	if resp, err := c.Get(e.ts.URL + "/bigbluebutton/api"); err == nil {
		resp.Body.Close()
		t.Fatal("a refusing simulator answered the API root")
	}
	if err := e.sim.SetAnswering(AnswerNormal); err != nil {
		t.Fatal(err)
	}
	if code, err := e.try(c); err != nil || code != http.StatusOK {
		t.Fatalf("after answering again: HTTP %d, %v", code, err)
	}
	st := e.sim.Stats()
	if st.Requests[bbb.CallGetMeetings] != 2 || st.Requests["root"] != 1 {
		t.Errorf("counters %v", st.Requests)
	}
}

func TestAnsweringHang(t *testing.T) {
	t.Run("client gives up", func(t *testing.T) {
		e := newEnv(t)
		if err := e.sim.SetAnswering(AnswerHang); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		_, err := e.try(rawClient(50 * time.Millisecond))
		var timeout interface{ Timeout() bool }
		if !errors.As(err, &timeout) || !timeout.Timeout() {
			t.Errorf("want a client timeout, got %v", err)
		}
		if time.Since(began) < 50*time.Millisecond {
			t.Error("the hang ended before the client gave up")
		}
	})
	t.Run("bounded by MaxHang", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.MaxHang = 40 * time.Millisecond })
		if err := e.sim.SetAnswering(AnswerHang); err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		if _, err := e.try(rawClient(5 * time.Second)); err == nil {
			t.Error("a hung request got an answer")
		}
		if took := time.Since(began); took < 40*time.Millisecond {
			t.Errorf("the connection closed after %s, before MaxHang", took)
		}
	})
	t.Run("held requests go on when answering resumes", func(t *testing.T) {
		e := newEnv(t)
		if err := e.sim.SetAnswering(AnswerHang); err != nil {
			t.Fatal(err)
		}
		type result struct {
			code int
			err  error
		}
		done := make(chan result, 1)
		go func() {
			code, err := e.try(rawClient(5 * time.Second))
			done <- result{code, err}
		}()
		testenv.Eventually(t, 5*time.Second, "the request to arrive", func() bool { return e.count(bbb.CallGetMeetings) == 1 })
		select {
		case r := <-done:
			t.Fatalf("answered while hanging: %+v", r)
		case <-time.After(20 * time.Millisecond):
		}
		if err := e.sim.SetAnswering(AnswerNormal); err != nil {
			t.Fatal(err)
		}
		if r := <-done; r.err != nil || r.code != http.StatusOK {
			t.Errorf("after resuming: %+v", r)
		}
	})
}
