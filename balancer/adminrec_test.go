package balancer

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/recordings/storage"
)

func TestAdminRecordingsImportAndStatus(t *testing.T) {
	re := newRecEnv(t, backends[0].dsn(t))
	spool := t.TempDir()
	re.srv.cfg.Recordings.Spool, re.srv.cfg.Recordings.Replica = spool, "r1"
	cl, err := adminapi.NewClient(re.http.URL, adminToken)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	st, err := cl.RecordingsStatus(ctx)
	if err != nil || st != (adminapi.RecordingsStatus{}) {
		t.Fatalf("empty status %+v, %v", st, err)
	}
	// Tars made by the agent's spool writer, outside the spool.
	outside := t.TempDir()
	var tars []string
	for _, m := range []string{"imp-a", "imp-b"} {
		id, dir := re.simRecording(t, m, nil)
		if _, err := storage.NewSpool(outside).Ship(ctx, storage.Shipment{Item: storage.Item{RecordID: id, Format: "presentation", Dir: dir}}); err != nil {
			t.Fatal(err)
		}
		tars = append(tars, filepath.Join(outside, id+".tar"))
	}
	bad := filepath.Join(outside, "broken.tar")
	if err := os.WriteFile(bad, []byte("not a tar at all, not even close to one, at least 512 bytes? no."), 0o644); err != nil {
		t.Fatal(err)
	}
	// A tar waiting in the spool counts as backlog.
	if err := os.WriteFile(filepath.Join(spool, "waiting.tar"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := cl.RecordingsStatus(ctx); err != nil || st.SpoolWaiting != 1 || st.SpoolFailed != 0 {
		t.Fatalf("status with one tar waiting: %+v, %v", st, err)
	}
	results, err := cl.ImportRecordings(ctx, adminapi.ImportRequest{Tars: append(tars, bad)})
	if err != nil || len(results) != 3 {
		t.Fatalf("import: %+v, %v", results, err)
	}
	for i, r := range results[:2] {
		if r.Result != adminapi.ImportImported || r.Tar != tars[i] {
			t.Errorf("import %s: %+v", tars[i], r)
		}
	}
	if r := results[2]; r.Result != adminapi.ImportFailed || r.Reason == "" {
		t.Errorf("import of a broken tar: %+v", r)
	}
	for _, p := range tars {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the operator's own tar is gone: %v", err)
		}
	}
	st, err = cl.RecordingsStatus(ctx)
	// waiting.tar (empty) and broken.tar are both failed now.
	if err != nil || st.Recordings != 2 || st.Bytes <= 0 || st.SpoolWaiting != 0 || st.SpoolFailed != 2 || st.CallbacksQueued != 0 {
		t.Errorf("status after the import: %+v, %v", st, err)
	}
	// Without a spool the import is refused and the backlog is -1.
	re.srv.cfg.Recordings.Spool = ""
	if _, err := cl.ImportRecordings(context.Background(), adminapi.ImportRequest{Tars: tars}); err == nil {
		t.Error("an import without --recordings-spool succeeded")
	}
	if st, err := cl.RecordingsStatus(ctx); err != nil || st.SpoolWaiting != -1 || st.SpoolFailed != -1 || st.Recordings != 2 {
		t.Errorf("status without a spool: %+v, %v", st, err)
	}
}
