package balancer

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bbb-agent/bbb-agent/balancer/store"
	"github.com/bbb-agent/bbb-agent/recordings/storage"
)

func TestSpoolImport(t *testing.T) {
	forEachBackend(t, func(t *testing.T, dsn string) {
		re := newRecEnv(t, dsn)
		spool := t.TempDir()
		ship := storage.NewSpool(spool)
		var ids []string
		for _, m := range []string{"spool-a", "spool-b", "spool-c"} {
			id, dir := re.simRecording(t, m, nil)
			if _, err := ship.Ship(ctxT(t), storage.Shipment{Item: storage.Item{RecordID: id, Format: "presentation", Dir: dir}}); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		// A truncated tar, garbage, and a tar about another recording.
		good, _ := os.ReadFile(filepath.Join(spool, ids[0]+".tar"))
		bad := map[string][]byte{
			"truncated.tar": good[:len(good)/2],
			"garbage.tar":   []byte(strings.Repeat("not a tar ", 100)),
			"other-id.tar":  good,
		}
		for name, b := range bad {
			if err := os.WriteFile(filepath.Join(spool, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}

		// The database is down for replica a: its claimed tar waits in
		// its work directory, nothing is lost or failed.
		down := openStore(t, dsn)
		rc := func(replica string) RecordingsConfig {
			return RecordingsConfig{Storage: "dir:" + re.storeDir, Spool: spool, Replica: replica}
		}
		a := newRecReplica(t, down, re.clock, rc("a"))
		down.Close()
		n, err := a.ImportSpool(ctxT(t))
		if err != nil || n != 0 {
			t.Fatalf("import with the database down: %d, %v", n, err)
		}
		if _, err := os.Stat(filepath.Join(spool, "failed", ids[0]+".tar")); err == nil {
			t.Fatal("a tar went to failed/ because the database was down")
		}
		claimed, _ := filepath.Glob(filepath.Join(spool, "work", "a", "*.tar"))
		if len(claimed) != len(ids) { // the bad tars need no database to be found bad
			t.Fatalf("replica a claimed %v", claimed)
		}
		// Replica a restarts on a working database, replica b beside it;
		// new tars arrive. Each is imported exactly once.
		idD, dirD := re.simRecording(t, "spool-d", nil)
		if _, err := ship.Ship(ctxT(t), storage.Shipment{Item: storage.Item{RecordID: idD, Format: "presentation", Dir: dirD}}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, idD)
		replicas := []*Server{newRecReplica(t, openStore(t, dsn), re.clock, rc("a")), newRecReplica(t, openStore(t, dsn), re.clock, rc("b"))}
		var (
			mu    sync.Mutex
			total int
			wg    sync.WaitGroup
		)
		for _, r := range replicas {
			wg.Go(func() {
				n, err := r.ImportSpool(ctxT(t))
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				total += n
				mu.Unlock()
			})
		}
		wg.Wait()
		if total != len(ids) {
			t.Errorf("imported %d tars, want %d", total, len(ids))
		}
		for _, id := range ids {
			r, err := re.store.Recording(ctxT(t), id)
			if err != nil || r.State != store.RecordingPublished || len(r.Formats) != 1 || r.Size == 0 {
				t.Errorf("indexed %s: %+v %v", id, r, err)
			}
			if _, err := os.Stat(filepath.Join(re.storeDir, "published", "presentation", id, "metadata.xml")); err != nil {
				t.Errorf("files of %s: %v", id, err)
			}
		}
		for name := range bad {
			reason, err := os.ReadFile(filepath.Join(spool, "failed", name+".reason"))
			if err != nil || !strings.Contains(string(reason), "bad recording tar") {
				t.Errorf("%s: reason %q, %v", name, reason, err)
			}
			if _, err := os.Stat(filepath.Join(spool, "failed", name)); err != nil {
				t.Errorf("%s not kept in failed/: %v", name, err)
			}
		}
		left, _ := filepath.Glob(filepath.Join(spool, "work", "*", "*"))
		top, _ := filepath.Glob(filepath.Join(spool, "*.tar"))
		if len(left)+len(top) != 0 {
			t.Errorf("left in the spool: %v %v", left, top)
		}
		// Another pass finds nothing: bad tars are not retried.
		for _, r := range replicas {
			if n, err := r.ImportSpool(ctxT(t)); n != 0 || err != nil {
				t.Errorf("second pass: %d %v", n, err)
			}
		}
	})
}
