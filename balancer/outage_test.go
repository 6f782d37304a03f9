package balancer

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// outageLength is how long TestPostgresOutage keeps PostgreSQL stopped.
const outageLength = 10 * time.Second

// TestPostgresOutage stops a real PostgreSQL for outageLength while a
// client joins running meetings and asks getMeetingInfo without pause:
// every join answers 302 to the meeting's node and every getMeetingInfo
// answers throughout; a create fails with the database error. After the
// restart the first refresh and flush succeed and a burst of creates wider
// than the connection pool all succeed: no pooled connection fails a call
// once for the outage; the same after a quick restart.
func TestPostgresOutage(t *testing.T) {
	pg := testenv.NewPG(t)
	e := newEnv(t, pg.URL(), testenv.NewClock())
	e.addNodes(3)
	cx := ctxT(t)

	// creates wider than the pool: every pooled connection is used before
	// the outage.
	burst := func(prefix string) error {
		var wg sync.WaitGroup
		errs := make([]error, 2*16)
		for i := range errs {
			wg.Go(func() {
				_, errs[i] = e.client.Create(cx, bbb.CreateRequest{MeetingID: fmt.Sprintf("%s-%02d", prefix, i), Name: "Outage"})
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	if err := burst("before"); err != nil {
		t.Fatal(err)
	}
	running := []string{"before-00", "before-07", "before-13", "before-21"}
	nodeURL := map[string]string{}
	for _, id := range running {
		nodeURL[id] = e.node(e.nodeOf(id)[0]).http.URL + "/"
	}

	// The load: joins and getMeetingInfo of the running meetings.
	var (
		calls, outageCalls atomic.Int64
		inOutage           atomic.Bool
		failMu             sync.Mutex
		failures           []string
		stop               = make(chan struct{})
		done               = make(chan struct{})
	)
	fail := func(format string, args ...any) {
		failMu.Lock()
		defer failMu.Unlock()
		if len(failures) < 10 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := running[i%len(running)]
			resp, err := noFollow.Get(e.client.JoinURL(bbb.JoinRequest{MeetingID: id, FullName: "x", Role: bbb.RoleViewer}))
			if err != nil {
				fail("join %s: %v", id, err)
				continue
			}
			resp.Body.Close()
			if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, nodeURL[id]) {
				fail("join %s: HTTP %d to %q, want 302 to %s", id, resp.StatusCode, loc, nodeURL[id])
			}
			if info, err := e.client.GetMeetingInfo(cx, id); err != nil || info.MeetingID != id {
				fail("getMeetingInfo %s: %+v, %v", id, info, err)
			}
			calls.Add(1)
			if inOutage.Load() {
				outageCalls.Add(1)
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()

	pg.Stop(t)
	inOutage.Store(true)
	outageEnds := time.After(outageLength)
	_, err := e.client.Create(cx, bbb.CreateRequest{MeetingID: "during", Name: "Outage"})
	if err == nil || !strings.Contains(err.Error(), "database did not answer") {
		t.Errorf("create during the outage: %v, want the database error", err)
	}
	// The replica's own database work goes on failing meanwhile.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case <-outageEnds:
			break wait
		case <-tick.C:
			if err := e.srv.Refresh(cx); err == nil {
				t.Error("a registry refresh succeeded with PostgreSQL stopped")
			}
		}
	}
	inOutage.Store(false)
	pg.Start(t)

	if err := e.srv.Refresh(cx); err != nil {
		t.Errorf("first refresh after the restart: %v", err)
	}
	if err := e.srv.Flush(cx); err != nil {
		t.Errorf("first flush after the restart: %v", err)
	}
	if err := burst("after"); err != nil {
		t.Errorf("creates after the restart: %v", err)
	}
	// A quick restart (well under a second) with every pooled connection
	// just used: each would fail its next call once without the pool's
	// liveness check.
	pg.Restart(t)
	if err := burst("restarted"); err != nil {
		t.Errorf("creates after a quick restart: %v", err)
	}
	close(stop)
	<-done
	failMu.Lock()
	defer failMu.Unlock()
	if len(failures) > 0 {
		t.Fatalf("%d calls, %d during the outage; failures:\n%s", calls.Load(), outageCalls.Load(), strings.Join(failures, "\n"))
	}
	if outageCalls.Load() == 0 {
		t.Fatal("no join and getMeetingInfo ran during the outage")
	}
	t.Logf("%d joins+getMeetingInfo, %d during the %v outage", calls.Load(), outageCalls.Load(), outageLength)
}
