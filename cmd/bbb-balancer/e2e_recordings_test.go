package main

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/bbb/sim/simtest"
	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/recordings/storage"
)

// importWithin bounds a wait for the spool importer: a few of the test's
// --recordings-spool-interval, and one backoff (5 s) after a database outage.
const importWithin = 30 * time.Second

// TestRecordingsSpoolEndToEnd runs the spool path with real processes: a
// bbb-sim that records, tars written by the agent's spool writer, two
// bbb-balancer replicas on one PostgreSQL and one spool.
func TestRecordingsSpoolEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	cmds := testenv.BuildCommands(t)
	pg := testenv.NewPG(t)
	simDir, storeDir, spoolDir := t.TempDir(), t.TempDir(), t.TempDir()
	node := simtest.Start(t, testenv.SimOpts{Bin: cmds.Sim, Secret: sim1Secret, Args: []string{"--recordings-dir", simDir, "--recording-file-size", "4096"}})
	replicas := make([]*testenv.Proc, 2)
	for i, name := range []string{"a", "b"} {
		replicas[i] = testenv.StartBalancer(t, testenv.BalancerOpts{
			Name: "bbb-balancer " + name, Bin: cmds.Balancer, Secret: lbSecret, AgentToken: agentToken, AdminToken: adminToken,
			Args: []string{"--db", pg.URL(), "--recordings-storage", "dir:" + storeDir, "--recordings-spool", spoolDir,
				"--recordings-replica", name, "--recordings-spool-interval", "200ms"},
		})
	}
	e := &e2e{t: t, bin: cmds.Balancer, url: replicas[0].Ready}
	lb, err := bbb.NewClient(replicas[1].Ready, lbSecret)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	writer := storage.NewSpool(spoolDir)

	// record runs a recorded meeting on bbb-sim and returns its record ID.
	record := func(meetingID string) string {
		t.Helper()
		var cr bbb.CreateResponse
		if err := node.Client.Get(ctx, bbb.CallCreate, url.Values{"meetingID": {meetingID}, "name": {"Meeting " + meetingID}, "record": {"true"}, "meta_course": {"e2e"}}, &cr); err != nil {
			t.Fatal(err)
		}
		if err := node.Client.Get(ctx, bbb.CallJoin, url.Values{"meetingID": {meetingID}, "fullName": {"T"}, "role": {"moderator"}, "redirect": {"false"}}, nil); err != nil {
			t.Fatal(err)
		}
		if err := node.Client.Get(ctx, bbb.CallEnd, url.Values{"meetingID": {meetingID}}, nil); err != nil {
			t.Fatal(err)
		}
		id := cr.InternalMeetingID
		testenv.Eventually(t, settle, "bbb-sim publishes "+id, func() bool {
			_, err := os.Stat(filepath.Join(simDir, "published", "presentation", id, "metadata.xml"))
			return err == nil
		})
		return id
	}
	// spool writes a recording's tar into the spool as the agent does.
	spool := func(id string) {
		t.Helper()
		dir := filepath.Join(simDir, "published", "presentation", id)
		if _, err := writer.Ship(ctx, storage.Shipment{Item: storage.Item{RecordID: id, Format: "presentation", Dir: dir}}); err != nil {
			t.Fatal(err)
		}
	}
	list := func(v url.Values) []bbb.Recording {
		t.Helper()
		var err error
		// After the database restart a call fails once per pooled
		// connection that PostgreSQL ended (pgx pings only connections
		// idle for over a second); the next one reconnects.
		for range 4 {
			var resp bbb.GetRecordingsResponse
			if err = lb.Get(ctx, bbb.CallGetRecordings, v, &resp); err == nil {
				return resp.Recordings
			}
		}
		t.Fatal(err)
		return nil
	}
	// listed polls, through list's failures too.
	listed := func(v url.Values, ids ...string) func() bool {
		return func() bool {
			var resp bbb.GetRecordingsResponse
			if err := lb.Get(ctx, bbb.CallGetRecordings, v, &resp); err != nil {
				t.Logf("getRecordings: %v", err)
				return false
			}
			got := map[string]bool{}
			for _, r := range resp.Recordings {
				got[r.RecordID] = true
			}
			for _, id := range ids {
				if !got[id] {
					return false
				}
			}
			return true
		}
	}

	// Three recordings, imported by two replicas, each once.
	var ids []string
	for i := range 3 {
		id := record(fmt.Sprintf("spool-e2e-%d", i))
		spool(id)
		ids = append(ids, id)
	}
	testenv.Eventually(t, importWithin, "getRecordings through the balancer lists the spooled recordings", listed(nil, ids...))
	imports := func(id string) int {
		n := 0
		for _, p := range replicas {
			n += strings.Count(p.Output(), `msg="spool tar imported" tar=`+id+".tar")
		}
		return n
	}
	// The tar is removed, and its import logged, just after it is indexed.
	testenv.Eventually(t, importWithin, "every tar's import is logged and the spool is empty", func() bool {
		left, _ := filepath.Glob(filepath.Join(spoolDir, "work", "*", "*"))
		top, _ := filepath.Glob(filepath.Join(spoolDir, "*.tar"))
		return len(left)+len(top) == 0 && imports(ids[0]) > 0 && imports(ids[1]) > 0 && imports(ids[2]) > 0
	})
	for _, id := range ids {
		if n := imports(id); n != 1 {
			t.Errorf("%s imported %d times by the two replicas, want once", id, n)
		}
	}

	// BBB's XML shape, and the same recording as bbb-sim's own getRecordings.
	raw := rawCall(t, lb, bbb.CallGetRecordings, url.Values{"recordID": {ids[0]}})
	for _, want := range []string{"<response>", "<returncode>SUCCESS</returncode>", "<recordings>", "<recording>",
		"<recordID>" + ids[0] + "</recordID>", "<meetingID>spool-e2e-0</meetingID>", "<published>true</published>",
		"<state>published</state>", "<course>e2e</course>", "<playback>", "<format>", "<type>presentation</type>",
		"/playback/presentation/2.3/" + ids[0] + "</url>", "<size>"} {
		if !strings.Contains(raw, want) {
			t.Errorf("getRecordings XML lacks %s:\n%s", want, raw)
		}
	}
	var fromSim, fromLB bbb.GetRecordingsResponse
	if err := xml.Unmarshal([]byte(raw), &fromLB); err != nil {
		t.Fatal(err)
	}
	if err := node.Client.Get(ctx, bbb.CallGetRecordings, url.Values{"recordID": {ids[0]}}, &fromSim); err != nil {
		t.Fatal(err)
	}
	if len(fromSim.Recordings) != 1 || len(fromLB.Recordings) != 1 {
		t.Fatalf("sim %d, balancer %d recordings", len(fromSim.Recordings), len(fromLB.Recordings))
	}
	s, l := fromSim.Recordings[0], fromLB.Recordings[0]
	if s.RecordID != l.RecordID || s.MeetingID != l.MeetingID || s.Name != l.Name || s.StartTime != l.StartTime || s.EndTime != l.EndTime ||
		s.State != l.State || s.Participants != l.Participants || len(s.Metadata) != len(l.Metadata) || len(s.Playback) != len(l.Playback) {
		t.Errorf("bbb-sim says %+v, the balancer %+v", s, l)
	}

	// Playback; publish false closes it and lists it as unpublished.
	play := replicas[0].Ready + "/presentation/" + ids[0] + "/metadata.xml"
	if code := testenv.GetStatus(t, play); code != http.StatusOK {
		t.Fatalf("playback of a published recording: HTTP %d", code)
	}
	if err := lb.Get(ctx, bbb.CallPublishRecordings, url.Values{"recordID": {ids[0]}, "publish": {"false"}}, nil); err != nil {
		t.Fatal(err)
	}
	if code := testenv.GetStatus(t, play); code != http.StatusNotFound {
		t.Errorf("playback of an unpublished recording: HTTP %d, want 404", code)
	}
	if rs := list(url.Values{"recordID": {ids[0]}}); len(rs) != 1 || rs[0].State != "unpublished" || rs[0].Published {
		t.Errorf("after publish=false: %+v", rs)
	}
	// Delete: no copy left in the trees playback serves from (the dir:
	// storage keeps BBB's deleted/ tree, as bbb-record --delete does),
	// listed with state=deleted.
	if err := lb.Get(ctx, bbb.CallDeleteRecordings, url.Values{"recordID": {ids[0]}}, nil); err != nil {
		t.Fatal(err)
	}
	for _, tree := range []string{"published", "unpublished"} {
		if _, err := os.Stat(filepath.Join(storeDir, tree, "presentation", ids[0])); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after delete, %s/presentation/%s: %v", tree, ids[0], err)
		}
	}
	if _, err := os.Stat(filepath.Join(storeDir, "deleted", "presentation", ids[0], "metadata.xml")); err != nil {
		t.Errorf("after delete, not in deleted/: %v", err)
	}
	if code := testenv.GetStatus(t, play); code != http.StatusNotFound {
		t.Errorf("playback of a deleted recording: HTTP %d, want 404", code)
	}
	if rs := list(url.Values{"state": {"deleted"}}); len(rs) != 1 || rs[0].RecordID != ids[0] || rs[0].State != "deleted" {
		t.Errorf("state=deleted lists %+v", rs)
	}
	if rs := list(nil); len(rs) != 2 {
		t.Errorf("the default listing after a delete: %d recordings, want 2", len(rs))
	}

	// A corrupt tar lands in failed/ with its reason.
	good, err := os.ReadFile(filepath.Join(storeDir, "published", "presentation", ids[1], "metadata.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(spoolDir, "corrupt-0001.tar"), good, 0o644); err != nil {
		t.Fatal(err)
	}
	reasonFile := filepath.Join(spoolDir, "failed", "corrupt-0001.tar.reason")
	testenv.Eventually(t, importWithin, "the corrupt tar lands in failed/", func() bool {
		_, err := os.Stat(filepath.Join(spoolDir, "failed", "corrupt-0001.tar"))
		return err == nil
	})
	if reason, err := os.ReadFile(reasonFile); err != nil || !strings.Contains(string(reason), "bad recording tar") {
		t.Errorf("failed/ reason %q, %v", reason, err)
	}

	// A database restart during the import loses nothing.
	pg.Stop(t)
	var during []string
	for i := range 2 {
		id := record(fmt.Sprintf("spool-outage-%d", i))
		spool(id)
		during = append(during, id)
	}
	testenv.Eventually(t, importWithin, "a replica claims the tars with the database down", func() bool {
		top, _ := filepath.Glob(filepath.Join(spoolDir, "*.tar"))
		return len(top) == 0
	})
	testenv.Eventually(t, importWithin, "an import fails with the database down", func() bool {
		for _, p := range replicas {
			if strings.Contains(p.Output(), `msg="spool tar import failed; will retry" tar=`+during[0]) ||
				strings.Contains(p.Output(), `msg="spool tar import failed; will retry" tar=`+during[1]) {
				return true
			}
		}
		return false
	})
	pg.Start(t)
	testenv.Eventually(t, importWithin, "the tars claimed during the outage are imported after it", listed(nil, during...))
	for _, id := range during {
		if _, err := os.Stat(filepath.Join(storeDir, "published", "presentation", id, "metadata.xml")); err != nil {
			t.Errorf("after the outage: %v", err)
		}
		if _, err := os.Stat(filepath.Join(spoolDir, "failed", id+".tar")); err == nil {
			t.Errorf("%s went to failed/ because the database was down", id)
		}
	}
	testenv.Eventually(t, importWithin, "the spool's work directories empty", func() bool {
		left, _ := filepath.Glob(filepath.Join(spoolDir, "work", "*", "*"))
		return len(left) == 0
	})

	// The operator's commands: import a tar now, and the status line.
	opDir := t.TempDir()
	id := record("spool-operator")
	if _, err := storage.NewSpool(opDir).Ship(ctx, storage.Shipment{Item: storage.Item{RecordID: id, Format: "presentation", Dir: filepath.Join(simDir, "published", "presentation", id)}}); err != nil {
		t.Fatal(err)
	}
	if out := e.ok("recordings", "import", filepath.Join(opDir, id+".tar")); !strings.Contains(out, id+".tar: imported") {
		t.Errorf("recordings import: %q", out)
	}
	if rs := list(url.Values{"recordID": {id}}); len(rs) != 1 {
		t.Errorf("after recordings import: %+v", rs)
	}
	if out := e.ok("status"); !strings.Contains(out, "Recordings: 5 (") || !strings.Contains(out, "spool 0 waiting, 1 failed, 0 callbacks queued") {
		t.Errorf("status:\n%s", out)
	}
	if out := e.ok("recordings", "status", "--json"); !strings.Contains(out, `"recordings": 5`) || !strings.Contains(out, `"spool_failed": 1`) {
		t.Errorf("recordings status --json:\n%s", out)
	}
}

// rawCall returns a BBB API call's XML as the balancer answers it.
func rawCall(t *testing.T, c *bbb.Client, call string, v url.Values) string {
	t.Helper()
	return testenv.GetBody(t, c.URL(call, v))
}
