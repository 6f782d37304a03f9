package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/bbb-agent/bbb-agent/fleet"
)

// Paths of the admin API on the unix socket.
const (
	adminStatus = "/v1/status"
	adminDrain  = "/v1/drain"
	// adminDrainWait streams the drain's status, one JSON Status a line,
	// whenever it changes, until the drain is done, leaving or cancelled,
	// or the agent stops.
	adminDrainWait = "/v1/drain/wait"
	adminUndrain   = "/v1/undrain"
	adminRotate    = "/v1/rotate-credential"
)

type adminError struct {
	Error string `json:"error"`
}

// ListenAdmin binds the admin socket at path, readable and writable by its
// owner only. A stale socket file from a crashed agent is replaced; a socket
// another agent still answers on is not: bind it before Run, so a second
// agent stops before it registers anything.
func ListenAdmin(path string) (net.Listener, error) { return listenUnix(path) }

// ServeAdmin serves the admin API on ln until ctx ends, then removes the
// socket file.
func (a *Agent) ServeAdmin(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+adminStatus, func(w http.ResponseWriter, r *http.Request) {
		writeAdmin(w, http.StatusOK, a.Status())
	})
	mux.HandleFunc("POST "+adminDrain, func(w http.ResponseWriter, r *http.Request) {
		var req DrainRequest
		if r.ContentLength != 0 {
			if err := decodeAdmin(r, &req); err != nil {
				writeAdmin(w, http.StatusBadRequest, adminError{err.Error()})
				return
			}
		}
		var err error
		if req.Deadline.IsZero() && req.DeadlineInSeconds == 0 {
			err = a.Drain(r.Context(), SourceAdmin)
		} else if req.DeadlineInSeconds < 0 {
			err = fmt.Errorf("deadline_in_seconds %v is negative: give a duration from now", req.DeadlineInSeconds)
		} else {
			err = a.DrainUntil(r.Context(), SourceAdmin, req.Deadline, time.Duration(req.DeadlineInSeconds*float64(time.Second)))
		}
		if err != nil {
			writeAdmin(w, http.StatusConflict, adminError{err.Error()})
			return
		}
		writeAdmin(w, http.StatusOK, a.liveDrainStatus(r.Context()))
	})
	mux.HandleFunc("GET "+adminDrainWait, func(w http.ResponseWriter, r *http.Request) {
		a.serveDrainWait(ctx, w, r)
	})
	mux.HandleFunc("POST "+adminUndrain, func(w http.ResponseWriter, r *http.Request) {
		if err := a.Undrain(r.Context()); err != nil {
			writeAdmin(w, http.StatusConflict, adminError{err.Error()})
			return
		}
		writeAdmin(w, http.StatusOK, a.Status())
	})
	mux.HandleFunc("POST "+adminRotate, func(w http.ResponseWriter, r *http.Request) {
		if err := a.RotateCredential(r.Context()); err != nil {
			writeAdmin(w, http.StatusConflict, adminError{err.Error()})
			return
		}
		writeAdmin(w, http.StatusOK, a.Status())
	})
	a.recordingsHandlers(mux)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	shutdownDone := make(chan struct{})
	go func() {
		defer close(shutdownDone)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		// Serve returns as soon as the shutdown starts; wait for it to
		// finish, so a drain watcher gets its last line before the exit.
		<-shutdownDone
	}
	if al, ok := ln.(*adminListener); ok {
		al.removeSocket()
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("admin socket directory: %w", err)
	}
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("admin socket %s answers: another bbb-agent is running", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing the stale admin socket %s: %w", path, err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	// The socket file is removed by removeSocket, and only if it is still
	// ours: a new agent may have replaced it while this one shut down.
	ln.SetUnlinkOnClose(false)
	fi, err := os.Stat(path)
	if err == nil {
		err = os.Chmod(path, 0o600)
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	return &adminListener{Listener: ln, path: path, file: fi}, nil
}

// adminListener is the admin socket and the file it made.
type adminListener struct {
	net.Listener
	path string
	file os.FileInfo
}

func (l *adminListener) removeSocket() {
	if now, err := os.Stat(l.path); err == nil && os.SameFile(now, l.file) {
		os.Remove(l.path)
	}
}

func writeAdmin(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// AdminClient talks to a running agent over its admin socket.
type AdminClient struct {
	path string
	http *http.Client
}

// NewAdminClient returns a client for the socket at path.
func NewAdminClient(path string) *AdminClient {
	return &AdminClient{path: path, http: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}
}

// Status asks the agent for its status.
func (c *AdminClient) Status(ctx context.Context) (Status, error) {
	return c.do(ctx, http.MethodGet, adminStatus)
}

// Drain asks the agent to drain.
func (c *AdminClient) Drain(ctx context.Context) (Status, error) {
	return c.do(ctx, http.MethodPost, adminDrain)
}

// DrainRequest is the body of a drain with its own deadline: an absolute
// time, or seconds from now (the agent's now).
type DrainRequest struct {
	Deadline          time.Time `json:"deadline,omitzero"`
	DeadlineInSeconds float64   `json:"deadline_in_seconds,omitempty"`
}

// DrainWith asks the agent to drain with this drain's own deadline (a
// drain under way that still waits gets the new deadline).
func (c *AdminClient) DrainWith(ctx context.Context, req DrainRequest) (Status, error) {
	var s Status
	err := c.call(ctx, http.MethodPost, adminDrain, req, &s)
	return s, err
}

// WaitDrain follows the drain: progress gets the status at the start and at
// every change, until the drain is done (drained), leaving or cancelled, or
// the agent stops; it returns the last status. It waits as long as the drain
// does: bound it with ctx.
func (c *AdminClient) WaitDrain(ctx context.Context, progress func(Status)) (Status, error) {
	var last Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://bbb-agent"+adminDrainWait, nil)
	if err != nil {
		return last, err
	}
	stream := &http.Client{Transport: c.http.Transport} // no timeout: a drain takes its time
	resp, err := stream.Do(req)
	if err != nil {
		return last, fmt.Errorf("no bbb-agent answers on %s (is it running? is --admin-socket right? are you root?): %w", c.path, unwrapURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e adminError
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return last, errors.New(e.Error)
		}
		return last, fmt.Errorf("bbb-agent answered HTTP %s", resp.Status)
	}
	dec := json.NewDecoder(resp.Body)
	seen := false
	for {
		var st Status
		if err := dec.Decode(&st); err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			if errors.Is(err, io.EOF) && seen {
				return last, nil
			}
			return last, fmt.Errorf("the drain's progress from bbb-agent ended: %w", unwrapURL(err))
		}
		last, seen = st, true
		if progress != nil {
			progress(st)
		}
	}
}

// Undrain asks the agent to cancel its drain.
func (c *AdminClient) Undrain(ctx context.Context) (Status, error) {
	return c.do(ctx, http.MethodPost, adminUndrain)
}

// RotateCredential asks the agent for a new node credential.
func (c *AdminClient) RotateCredential(ctx context.Context) (Status, error) {
	return c.do(ctx, http.MethodPost, adminRotate)
}

func (c *AdminClient) do(ctx context.Context, method, path string) (Status, error) {
	var s Status
	err := c.call(ctx, method, path, nil, &s)
	return s, err
}

// call sends in (nil: no body) as JSON and decodes a 200 answer into out.
func (c *AdminClient) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://bbb-agent"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("no bbb-agent answers on %s (is it running? is --admin-socket right? are you root?): %w", c.path, unwrapURL(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e adminError
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("bbb-agent answered HTTP %s", resp.Status)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("bbb-agent's answer is not the expected JSON: %w", err)
	}
	return nil
}

// decodeAdmin reads a request's JSON body (at most 64 KiB).
func decodeAdmin(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("the request is not the expected JSON: %w", err)
	}
	return nil
}

func unwrapURL(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// liveDrainStatus is the status with the meetings BBB runs at this moment,
// not those of the last report cycle: the operator who just asked for a
// drain wants to know what it waits for now.
func (a *Agent) liveDrainStatus(ctx context.Context) Status {
	st := a.Status()
	if a.deps.BBB == nil || st.Drain == nil {
		return st
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	meetings, err := a.deps.BBB.GetMeetings(cctx)
	if err != nil {
		return st // the last measurement, and status says whether BBB answers
	}
	n := fleet.CountMeetings(meetings).Meetings
	st.Load.Meetings, st.Drain.MeetingsLeft = n, n
	return st
}

// rotator is a registrar that can replace the node's own credential
// (bbb-balancer's; Scalelite has none).
type rotator interface {
	Rotate(ctx context.Context) error
}

// RotateCredential replaces the node's credential at the balancer and in the
// state directory: the old one stops working at once.
func (a *Agent) RotateCredential(ctx context.Context) error {
	r, ok := a.deps.Registrar.(rotator)
	if !ok {
		return fmt.Errorf("the %s registrar has no node credential to rotate", a.deps.Registrar.Kind())
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.Rotate(cctx); err != nil {
		return fmt.Errorf("rotating the node credential: %w", err)
	}
	a.log.Info("node credential rotated")
	return nil
}

// drainWaitKeepAlive is how often a drain watcher gets the status when
// nothing changes (the meetings' figures, the report age).
const drainWaitKeepAlive = 30 * time.Second

// serveDrainWait streams the drain's status: a line now, one at every change
// and one every drainWaitKeepAlive, the last when the drain is done,
// leaving or cancelled, or when the agent stops (serveCtx ends).
func (a *Agent) serveDrainWait(serveCtx context.Context, w http.ResponseWriter, r *http.Request) {
	changed := a.drainChanged()
	st := a.Status()
	if st.Drain == nil {
		writeAdmin(w, http.StatusConflict, adminError{"the node is not draining: start a drain first (bbb-agent drain)"})
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	keepAlive := time.NewTicker(drainWaitKeepAlive)
	defer keepAlive.Stop()
	for {
		if err := enc.Encode(st); err != nil {
			return // the watcher went away
		}
		if flusher != nil {
			flusher.Flush()
		}
		if drainWaitOver(st) {
			return
		}
		stopping := false
		select {
		case <-changed:
		case <-keepAlive.C:
		case <-r.Context().Done():
			return
		case <-serveCtx.Done():
			stopping = true
		}
		changed = a.drainChanged()
		st = a.Status()
		if stopping {
			st.State = Stopped // the agent's run has ended
			_ = enc.Encode(st)
			return
		}
	}
}

// drainWaitOver says whether a drain watcher has seen the end of what it
// waits for: the drain done, leaving, cancelled, or the agent stopped.
func drainWaitOver(st Status) bool {
	if st.Drain == nil || st.State == Stopped || st.State == Drained {
		return true
	}
	switch drainPhase(st.Drain.Phase) {
	case drainDone, drainLeaving:
		return true
	}
	return st.Drain.Finished != ""
}
