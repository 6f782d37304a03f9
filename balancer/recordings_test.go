package balancer

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/balancer/store"
	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/recordings"
)

// recEnv is a balancer with a dir: recordings storage beside a simulated
// BBB server that records, for parity tests: every recording the simulator
// publishes is shipped to the balancer as an agent would.
type recEnv struct {
	*env
	simDir, storeDir string
	sim              *sim.Server
	simClient        *bbb.Client
	simClock         *testenv.Clock
}

func newRecEnv(t *testing.T, dsn string) *recEnv {
	t.Helper()
	re := &recEnv{simDir: t.TempDir(), storeDir: t.TempDir(), simClock: testenv.NewClock()}
	st := openStore(t, dsn)
	clk := testenv.NewClock()
	srv := newRecReplica(t, st, clk, RecordingsConfig{Storage: "dir:" + re.storeDir, PlaybackURL: "https://play.example.com"})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	c, err := bbb.NewClient(ts.URL, lbSecret)
	if err != nil {
		t.Fatal(err)
	}
	re.env = &env{t: t, clock: clk, srv: srv, http: ts, store: st, client: c}
	re.sim = sim.New(sim.Config{Secret: "node-secret-1-abcdef", Seed: 1, RecordingsDir: re.simDir, RecordingFileSize: 256, Clock: re.simClock.Now})
	simHTTP := httptest.NewServer(re.sim)
	t.Cleanup(simHTTP.Close)
	re.simClient, err = bbb.NewClient(simHTTP.URL, "node-secret-1-abcdef")
	if err != nil {
		t.Fatal(err)
	}
	nd := &node{name: "bbb1", secret: "node-secret-1-abcdef", sim: re.sim, http: simHTTP}
	re.nodes = append(re.nodes, nd)
	re.register(nd)
	return re
}

// lbSecret2 is the balancer's second secret, as during a rotation.
const lbSecret2 = "balancer-secret-two-9876543210"

// newRecReplica is a balancer replica on st with those recordings settings.
func newRecReplica(t testing.TB, st *store.Store, clk *testenv.Clock, rc RecordingsConfig) *Server {
	t.Helper()
	srv, err := New(context.Background(), Config{
		Secrets: []string{lbSecret, lbSecret2}, AgentToken: agentToken, AdminToken: adminToken,
		Clock: clk.Now, Logger: slog.New(slog.DiscardHandler), Recordings: rc,
	}, st)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// simRecording runs a recorded meeting on the simulator and returns the
// record ID and its published directory.
func (re *recEnv) simRecording(t *testing.T, meetingID string, params url.Values) (string, string) {
	t.Helper()
	ctx := ctxT(t)
	v := url.Values{"meetingID": {meetingID}, "name": {"Meeting " + meetingID}, "record": {"true"}}
	for k, vs := range params {
		v[k] = vs
	}
	var cr bbb.CreateResponse
	if err := re.simClient.Get(ctx, bbb.CallCreate, v, &cr); err != nil {
		t.Fatal(err)
	}
	if err := re.simClient.Get(ctx, bbb.CallJoin, url.Values{"meetingID": {meetingID}, "fullName": {"T"}, "role": {"moderator"}, "redirect": {"false"}}, nil); err != nil {
		t.Fatal(err)
	}
	re.simClock.Advance(time.Duration(len(meetingID)+5) * time.Minute)
	if err := re.simClient.Get(ctx, bbb.CallEnd, url.Values{"meetingID": {meetingID}}, nil); err != nil {
		t.Fatal(err)
	}
	re.simClock.Advance(time.Minute)
	id := cr.InternalMeetingID
	return id, filepath.Join(re.simDir, "published", "presentation", id)
}

// record runs a recorded meeting on the simulator and ships the recording
// to the balancer's agent API, its files to the storage tree.
func (re *recEnv) record(t *testing.T, meetingID string, params url.Values) string {
	t.Helper()
	id, src := re.simRecording(t, meetingID, params)
	md, err := recordings.ReadMetadata(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(re.storeDir, "published", "presentation", id)
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	md.Storage, md.ShippedAt = "spool", re.clock.Now()
	re.agentCall(agentapi.PathRecording, agentapi.RecordingRequest{Node: "bbb1", Recording: md}, nil, 204)
	return id
}

// both runs a call against the simulator and the balancer.
func (re *recEnv) both(t *testing.T, call string, v url.Values) {
	t.Helper()
	for _, c := range []*bbb.Client{re.simClient, re.client} {
		if err := c.Get(ctxT(t), call, v, nil); err != nil {
			t.Fatalf("%s %v on %s: %v", call, v, c.APIURL(), err)
		}
	}
}

// summary is what parity compares of one recording.
func summary(r bbb.Recording) string {
	var meta []string
	for _, m := range r.Metadata {
		meta = append(meta, strings.ToLower(m.Key)+"="+m.Value)
	}
	slices.Sort(meta)
	var formats []string
	for _, f := range r.Playback {
		u, _ := url.Parse(f.URL)
		formats = append(formats, fmt.Sprintf("%s %s len=%d size=%d previews=%d", f.Type, u.Path, f.Length, f.Size, len(f.Preview.Images)))
	}
	return fmt.Sprintf("%s meeting=%s internal=%s name=%q breakout=%v published=%v state=%s start=%d end=%d participants=%d rawSize=%d size=%d meta=%v formats=%v",
		r.RecordID, r.MeetingID, r.InternalMeetingID, r.Name, r.IsBreakout, r.Published, r.State, r.StartTime, r.EndTime,
		r.Participants, r.RawSize, r.Size, meta, formats)
}

func TestGetRecordingsParity(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		re := newRecEnv(t, dsn)
		var ids []string
		for i := range 9 {
			meta := url.Values{"meta_course": {fmt.Sprintf("bio-%d", i%3)}}
			if i%2 == 0 {
				meta.Set("meta_origin", "Greenlight")
			} else {
				meta.Set("meta_origin", "Moodle")
			}
			ids = append(ids, re.record(t, fmt.Sprintf("room-%d", i%4), meta))
		}
		re.both(t, bbb.CallPublishRecordings, url.Values{"recordID": {ids[1] + "," + ids[2]}, "publish": {"false"}})
		re.both(t, bbb.CallDeleteRecordings, url.Values{"recordID": {ids[3]}})
		re.both(t, bbb.CallUpdateRecordings, url.Values{"recordID": {ids[4]}, "meta_origin": {""}, "meta_tag": {"x"}})
		re.both(t, bbb.CallPublishRecordings, url.Values{"recordID": {ids[2]}, "publish": {"true"}})

		queries := []url.Values{
			{},
			{"meetingID": {"room-1"}},
			{"meetingID": {"room-1,room-2"}},
			{"recordID": {ids[0] + "," + ids[5]}},
			{"recordID": {ids[1][:40]}, "meetingID": {"room-0"}},
			{"state": {"unpublished"}},
			{"state": {"deleted"}},
			{"state": {"any"}},
			{"state": {"published,deleted"}},
			{"meta_origin": {"Greenlight"}},
			{"meta_ORIGIN": {"Moo%"}},
			{"meta_course": {"%-1"}, "meta_origin": {"%ood%"}},
			{"meta_tag": {"x"}},
			{"meta_origin": {"greenlight"}},
			{"limit": {"4"}},
			{"offset": {"4"}, "limit": {"4"}},
			{"offset": {"8"}, "limit": {"4"}},
			{"offset": {"2"}, "state": {"any"}},
			{"offset": {"50"}},
			{"meetingID": {"room-0"}, "limit": {"1"}, "offset": {"1"}},
		}
		for _, q := range queries {
			var fromSim, fromLB bbb.GetRecordingsResponse
			if err := re.simClient.Get(ctxT(t), bbb.CallGetRecordings, q, &fromSim); err != nil {
				t.Fatal(err)
			}
			if err := re.client.Get(ctxT(t), bbb.CallGetRecordings, q, &fromLB); err != nil {
				t.Fatal(err)
			}
			if fromSim.MessageKey != fromLB.MessageKey || (fromSim.TotalElements == nil) != (fromLB.TotalElements == nil) ||
				fromSim.TotalElements != nil && *fromSim.TotalElements != *fromLB.TotalElements {
				t.Errorf("%v: sim answers messageKey %q total %v, balancer %q %v", q, fromSim.MessageKey, fromSim.TotalElements, fromLB.MessageKey, fromLB.TotalElements)
			}
			if len(fromSim.Recordings) == 0 && len(q) == 0 {
				t.Fatal("the simulator lists no recordings")
			}
			var a, b []string
			for _, r := range fromSim.Recordings {
				a = append(a, summary(r))
			}
			for _, r := range fromLB.Recordings {
				b = append(b, summary(r))
				for _, f := range r.Playback {
					if !strings.HasPrefix(f.URL, "https://play.example.com/playback/presentation/2.3/") {
						t.Errorf("playback link %s is not on --playback-url", f.URL)
					}
				}
			}
			if !slices.Equal(a, b) {
				t.Errorf("%v:\nsim:\n  %s\nbalancer:\n  %s", q, strings.Join(a, "\n  "), strings.Join(b, "\n  "))
			}
		}

		// The storage tree follows: unpublished and deleted copies moved.
		for id, tree := range map[string]string{ids[0]: "published", ids[1]: "unpublished", ids[2]: "published", ids[3]: "deleted"} {
			for _, other := range []string{"published", "unpublished", "deleted"} {
				_, err := os.Stat(filepath.Join(re.storeDir, other, "presentation", id, "metadata.xml"))
				if (other == tree) != (err == nil) {
					t.Errorf("%s in %s: %v (want it in %s only)", id, other, err, tree)
				}
			}
		}
		// Unknown recordings are notFound, as on BBB.
		err := re.client.Get(ctxT(t), bbb.CallPublishRecordings, url.Values{"recordID": {"nope"}, "publish": {"true"}}, nil)
		if !strings.Contains(fmt.Sprint(err), bbb.KeyNotFound) {
			t.Errorf("publishing an unknown recording: %v", err)
		}
		// A deleted recording stays deleted when its shipment arrives again.
		r, err := re.store.Recording(ctxT(t), ids[3])
		if err != nil || r.State != store.RecordingDeleted {
			t.Fatalf("deleted recording: %+v %v", r, err)
		}
	})
}

func TestRetention(t *testing.T) {
	re := newRecEnv(t, backends[0].dsn(t))
	re.srv.cfg.Recordings.Retention = 24 * time.Hour
	old := re.record(t, "old", nil)
	re.simClock.Advance(48 * time.Hour)
	recent := re.record(t, "recent", nil)
	re.clock.Advance(re.simClock.Now().Sub(re.clock.Now()) + time.Hour)
	n, err := re.srv.ApplyRetention(ctxT(t))
	if err != nil || n != 1 {
		t.Fatalf("retention deleted %d, %v", n, err)
	}
	for id, want := range map[string]string{old: store.RecordingDeleted, recent: store.RecordingPublished} {
		r, err := re.store.Recording(ctxT(t), id)
		if err != nil || r.State != want {
			t.Errorf("%s: %q %v, want %s", id, r.State, err, want)
		}
		if _, err := os.Stat(filepath.Join(re.storeDir, want, "presentation", id)); err != nil {
			t.Errorf("%s not in the %s tree: %v", id, want, err)
		}
	}
	if n, err := re.srv.ApplyRetention(ctxT(t)); n != 0 || err != nil {
		t.Errorf("second run: %d %v", n, err)
	}
}

// TestConcurrentStateChanges races publish, unpublish and delete calls on
// the same recordings: afterwards every recording's files are in the one
// tree its indexed state names.
func TestConcurrentStateChanges(t *testing.T) {
	re := newRecEnv(t, backends[0].dsn(t))
	var ids []string
	for i := range 4 {
		ids = append(ids, re.record(t, fmt.Sprintf("race-%d", i), nil))
	}
	calls := []url.Values{
		{"publish": {"false"}}, {"publish": {"true"}}, {"publish": {"false"}}, {"publish": {"true"}}, nil,
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 10 {
				v := url.Values{"recordID": {ids[(w+i)%len(ids)]}}
				call := bbb.CallDeleteRecordings
				if extra := calls[(w*3+i)%len(calls)]; extra != nil && (w+i)%7 != 0 {
					call, v["publish"] = bbb.CallPublishRecordings, extra["publish"]
				}
				err := re.client.Get(context.Background(), call, v, nil)
				if err != nil && !strings.Contains(err.Error(), bbb.KeyNotFound) {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		r, err := re.store.Recording(ctxT(t), id)
		if err != nil {
			t.Fatal(err)
		}
		for _, tree := range []string{"published", "unpublished", "deleted"} {
			_, err := os.Stat(filepath.Join(re.storeDir, tree, "presentation", id))
			if (tree == r.State) != (err == nil) {
				t.Errorf("%s is %s in the index; in the %s tree: %v", id, r.State, tree, err == nil)
			}
		}
	}
}
