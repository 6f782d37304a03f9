package balancer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
)

// handleAdminRecordings adds the recordings' admin routes to mux.
func (s *Server) handleAdminRecordings(mux *http.ServeMux) {
	mux.HandleFunc("GET "+adminapi.PathRecordingsStatus, s.adminRecordingsStatus)
	mux.HandleFunc("POST "+adminapi.PathRecordingsImport, s.adminRecordingsImport)
}

func (s *Server) adminRecordingsStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.RecordingsStatus(r)
	if err != nil {
		s.log.Error("recordings status", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, adminapi.Error{Error: "the balancer's database did not answer; retry: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// RecordingsStatus counts the indexed recordings and the import and
// callback backlogs.
func (s *Server) RecordingsStatus(r *http.Request) (adminapi.RecordingsStatus, error) {
	out := adminapi.RecordingsStatus{SpoolWaiting: -1, SpoolFailed: -1}
	var err error
	if out.Recordings, out.Bytes, err = s.store.RecordingStats(r.Context()); err != nil {
		return out, err
	}
	if out.CallbacksQueued, err = s.store.CallbackBacklog(r.Context()); err != nil {
		return out, err
	}
	if spool := s.cfg.Recordings.Spool; spool != "" {
		out.SpoolWaiting = countTars(spool)
		works, _ := os.ReadDir(filepath.Join(spool, spoolWork))
		for _, e := range works {
			if e.IsDir() {
				out.SpoolWaiting += countTars(filepath.Join(spool, spoolWork, e.Name()))
			}
		}
		out.SpoolFailed = countTars(filepath.Join(spool, spoolFailed))
	}
	return out, nil
}

// countTars counts the tars the importer would look at in dir.
func countTars(dir string) int {
	entries, _ := os.ReadDir(dir)
	n := 0
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".tar") && !strings.HasPrefix(e.Name(), ".") {
			n++
		}
	}
	return n
}

// adminRecordingsImport copies the named tars into this replica's claim
// directory of the spool and runs an import pass at once: the spool
// importer's own code, its failed/ and its retries.
func (s *Server) adminRecordingsImport(w http.ResponseWriter, r *http.Request) {
	spool := s.cfg.Recordings.Spool
	if spool == "" {
		writeJSON(w, http.StatusBadRequest, adminapi.Error{Error: "this balancer has no --recordings-spool to import through: start it with --recordings-spool DIR and --recordings-storage dir:DIR"})
		return
	}
	var req adminapi.ImportRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || len(req.Tars) == 0 {
		writeJSON(w, http.StatusBadRequest, adminapi.Error{Error: "want {\"tars\": [\"/path/<record_id>.tar\", ...]}"})
		return
	}
	work := filepath.Join(spool, spoolWork, s.cfg.Recordings.Replica)
	if err := os.MkdirAll(work, 0o750); err != nil {
		writeJSON(w, http.StatusInternalServerError, adminapi.Error{Error: fmt.Sprintf("recordings spool: %v", err)})
		return
	}
	for _, p := range req.Tars {
		name := filepath.Base(p)
		if !filepath.IsAbs(p) || !strings.HasSuffix(name, ".tar") || !safeName(strings.TrimSuffix(name, ".tar")) {
			writeJSON(w, http.StatusBadRequest, adminapi.Error{Error: fmt.Sprintf("%q: want an absolute path to <record_id>.tar", p)})
			return
		}
		if err := copyIntoSpool(p, work, name); err != nil {
			writeJSON(w, http.StatusBadRequest, adminapi.Error{Error: fmt.Sprintf("%s: %v", p, err)})
			return
		}
		// An operator's import is now, whatever the backoff said.
		s.rec.spoolMu.Lock()
		delete(s.rec.spoolRetries, name)
		s.rec.spoolMu.Unlock()
	}
	if _, err := s.ImportSpool(r.Context()); err != nil {
		writeJSON(w, http.StatusInternalServerError, adminapi.Error{Error: err.Error()})
		return
	}
	out := make([]adminapi.ImportResult, 0, len(req.Tars))
	for _, p := range req.Tars {
		name := filepath.Base(p)
		res := adminapi.ImportResult{Tar: p, Result: adminapi.ImportImported}
		if _, err := os.Stat(filepath.Join(work, name)); err == nil {
			res.Result = adminapi.ImportRetrying
			res.Reason = "a failure that may pass (see the balancer's log); the importer retries it with backoff"
		} else if reason, err := os.ReadFile(filepath.Join(spool, spoolFailed, name+".reason")); err == nil {
			if _, err := os.Stat(filepath.Join(spool, spoolFailed, name)); err == nil {
				res.Result, res.Reason = adminapi.ImportFailed, strings.TrimSpace(string(reason))
			}
		}
		out = append(out, res)
	}
	writeJSON(w, http.StatusOK, out)
}

// copyIntoSpool copies a tar into dir under a hidden name, then renames it
// to name, so that the importer never sees half a tar. A tar from an
// earlier failed import is replaced; its old reason goes with it.
func copyIntoSpool(src, dir, name string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := filepath.Join(dir, "."+name+".importing")
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	failed := filepath.Join(filepath.Dir(filepath.Dir(dir)), spoolFailed, name)
	for _, p := range []string{failed + ".reason", failed} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
