package balancer

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/bbb-agent/bbb-agent/balancer/store"
)

// playbackFormats are the formats whose files the balancer serves at
// /<format>/<record_id>/..., as BBB's nginx does.
var playbackFormats = []string{"presentation", "video", "podcast", "notes", "screenshare"}

// handlePlayback adds the playback routes to mux.
func (s *Server) handlePlayback(mux *http.ServeMux) {
	for _, f := range playbackFormats {
		mux.HandleFunc("GET /"+f+"/", s.servePlayback)
	}
	s.handleProtected(mux)
	if dir := s.cfg.Recordings.PlayerDir; dir != "" {
		mux.Handle("GET "+playerPath, playerHandler(dir))
	}
}

// playerPath is where bbb-playback's player is served, as BBB's nginx does.
const playerPath = "/playback/presentation/2.3/"

// playerHandler serves the player's static files from dir; any other path
// under playerPath (the player's own routes, /playback/presentation/2.3/<id>)
// gets index.html, as bbb-playback's nginx try_files does.
func playerHandler(dir string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		file := path.Clean("/" + strings.TrimPrefix(r.URL.Path, playerPath))[1:]
		if file != "" && fsValid(file) {
			if f, err := os.Open(filepath.Join(dir, filepath.FromSlash(file))); err == nil {
				defer f.Close()
				if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
					http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
					return
				}
			}
		}
		f, err := os.Open(filepath.Join(dir, "index.html"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, "index.html", fi.ModTime(), f)
	})
}

// servePlayback serves one file of a published recording; anything else
// (unknown, unpublished, deleted, a format it does not have) is 404.
func (s *Server) servePlayback(w http.ResponseWriter, r *http.Request) {
	format, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	recordID, file, _ := strings.Cut(rest, "/")
	file = path.Clean("/" + file)[1:]
	if !safeName(recordID) || file == "" || !fsValid(file) {
		http.NotFound(w, r)
		return
	}
	rec, ok := s.playbackRecording(w, r, recordID)
	if !ok {
		return
	}
	if _, ok := rec.Format(format); !ok || rec.State != store.RecordingPublished {
		http.NotFound(w, r)
		return
	}
	if rec.Protected && !s.protectedAllowed(r, recordID, format) {
		http.Error(w, "this recording is protected: open it through its link from getRecordings", http.StatusForbidden)
		return
	}
	w.Header().Set("Cache-Control", "private, max-age=60")
	switch files := s.rec.files.(type) {
	case dirFiles:
		s.serveDirFile(w, r, files.formatDir(store.RecordingPublished, format, recordID), file)
	case *s3Files:
		s.serveS3Object(w, r, files, files.formatPrefix(format, recordID)+file)
	default:
		http.NotFound(w, r)
	}
}

func fsValid(p string) bool {
	for part := range strings.SplitSeq(p, "/") {
		if !safeName(part) {
			return false
		}
	}
	return true
}

func (s *Server) serveDirFile(w http.ResponseWriter, r *http.Request, dir, file string) {
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(file)))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	// ServeContent answers Range and conditional requests and sets the
	// content type from the extension.
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

// serveS3Object streams an object, passing Range through. Streaming, not a
// presigned redirect: the bucket's endpoint need not be reachable by
// viewers, and the balancer keeps enforcing the published state on every
// request (a presigned URL stays valid after an unpublish until it expires).
func (s *Server) serveS3Object(w http.ResponseWriter, r *http.Request, files *s3Files, key string) {
	in := &s3.GetObjectInput{Bucket: &files.bucket, Key: aws.String(key)}
	if rg := r.Header.Get("Range"); rg != "" {
		in.Range = aws.String(rg)
	}
	out, err := files.client.GetObject(r.Context(), in)
	if err != nil {
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) {
			switch apiErr.ErrorCode() {
			case "NoSuchKey", "NotFound":
				http.NotFound(w, r)
				return
			case "InvalidRange":
				http.Error(w, "invalid range", http.StatusRequestedRangeNotSatisfiable)
				return
			}
		}
		s.log.Error("playback: reading from S3", "key", key, "err", err)
		http.Error(w, "the recordings storage did not answer; try again", http.StatusBadGateway)
		return
	}
	defer out.Body.Close()
	h := w.Header()
	ctype := mime.TypeByExtension(path.Ext(key))
	if ctype == "" {
		ctype = aws.ToString(out.ContentType)
	}
	if ctype != "" {
		h.Set("Content-Type", ctype)
	}
	h.Set("Accept-Ranges", "bytes")
	if out.ContentLength != nil {
		h.Set("Content-Length", strconv.FormatInt(*out.ContentLength, 10))
	}
	if out.LastModified != nil {
		h.Set("Last-Modified", out.LastModified.UTC().Format(http.TimeFormat))
	}
	status := http.StatusOK
	if out.ContentRange != nil {
		h.Set("Content-Range", *out.ContentRange)
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(w, out.Body); err != nil {
		s.log.Debug("playback: the viewer went away", "key", key, "err", fmt.Sprint(err))
	}
}

// playbackRecording looks up a recording for a playback request, answering
// 404 for an unknown one and 503 when the database does not answer.
func (s *Server) playbackRecording(w http.ResponseWriter, r *http.Request, recordID string) (store.Recording, bool) {
	rec, err := s.store.Recording(r.Context(), recordID)
	if errors.Is(err, store.ErrNotFound) {
		http.NotFound(w, r)
		return rec, false
	}
	if err != nil {
		s.log.Error("playback: looking up a recording", "record_id", recordID, "err", err)
		http.Error(w, "the balancer's database did not answer; try again", http.StatusServiceUnavailable)
		return rec, false
	}
	return rec, true
}
