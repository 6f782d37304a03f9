package sim

import (
	"bufio"
	"cmp"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/bbb-agent/bbb-agent/bbb"
)

// Recording states, as bbb-web names them and as the directories under
// RecordingsDir are named.
const (
	statePublished   = "published"
	stateUnpublished = "unpublished"
	stateDeleted     = "deleted"
)

// playbackFormat is the one playback format the simulator publishes.
const playbackFormat = "presentation"

// recordingXML is a recording's metadata.xml as BBB writes it under
// published/presentation/<record_id>/. It is also the simulator's record of
// the recording.
type recordingXML struct {
	XMLName       xml.Name          `xml:"recording"`
	ID            string            `xml:"id"`
	State         string            `xml:"state"`
	Published     bool              `xml:"published"`
	StartTime     int64             `xml:"start_time"`
	EndTime       int64             `xml:"end_time"`
	Participants  int               `xml:"participants"`
	Meeting       meetingXML        `xml:"meeting"`
	Meta          bbb.Metadata      `xml:"meta"`
	Breakout      *breakoutXML      `xml:"breakout,omitempty"`
	BreakoutRooms *breakoutRoomsXML `xml:"breakoutRooms,omitempty"`
	Playback      playbackXML       `xml:"playback"`
	RawSize       int64             `xml:"raw_size"`
}

type meetingXML struct {
	ID         string `xml:"id,attr"`
	ExternalID string `xml:"externalId,attr"`
	Name       string `xml:"name,attr"`
	Breakout   bool   `xml:"breakout,attr"`
}

type breakoutXML struct {
	ParentMeetingID string `xml:"parentMeetingId,attr"`
	Sequence        int    `xml:"sequence,attr"`
	MeetingID       string `xml:"meetingId,attr"`
}

// breakoutRoomsXML lists a parent meeting's rooms; a pointer, so that a
// meeting without rooms has no element at all.
type breakoutRoomsXML struct {
	Rooms []string `xml:"breakoutRoom"`
}

type playbackXML struct {
	Format         string        `xml:"format"`
	Link           string        `xml:"link"`
	ProcessingTime int64         `xml:"processing_time"`
	Duration       int64         `xml:"duration"`
	Extensions     extensionsXML `xml:"extensions"`
	Size           int64         `xml:"size"`
}

type extensionsXML struct {
	Preview bbb.Preview `xml:"preview"`
}

// toAPI describes the recording as getRecordings does.
func (r *recordingXML) toAPI() bbb.Recording {
	preview := r.Playback.Extensions.Preview
	return bbb.Recording{
		RecordID:          r.ID,
		MeetingID:         r.Meeting.ExternalID,
		InternalMeetingID: r.Meeting.ID,
		Name:              r.Meeting.Name,
		IsBreakout:        r.Meeting.Breakout,
		Published:         r.Published,
		State:             r.State,
		StartTime:         r.StartTime,
		EndTime:           r.EndTime,
		Participants:      r.Participants,
		RawSize:           r.RawSize,
		Metadata:          r.Meta,
		Size:              r.Playback.Size,
		Playback: []bbb.PlaybackFormat{{
			Type:           r.Playback.Format,
			URL:            r.Playback.Link,
			ProcessingTime: r.Playback.ProcessingTime,
			Length:         int(r.Playback.Duration / 60000), // whole minutes, floored
			Size:           r.Playback.Size,
			Preview:        &preview,
		}},
	}
}

// dir is where the recording's playback files live in its current state.
func (s *Server) recordingDir(state, id string) string {
	return filepath.Join(s.cfg.RecordingsDir, state, playbackFormat, id)
}

// plannedFile is one file of a published recording.
type plannedFile struct {
	path string // relative to the recording's directory
	head []byte // the content, or the first bytes of a padded binary file
	size int64  // the full size; beyond head it is filled with noise
}

var (
	pngMagic  = []byte("\x89PNG\r\n\x1a\n")
	webmMagic = []byte("\x1a\x45\xdf\xa3")
)

// plan lists the files of a recording's presentation playback: a realistic
// handful of what bbb-record-core publishes.
func (s *Server) plan(in recordingInput, presentation string) []plannedFile {
	big := s.cfg.RecordingFileSize
	image, thumb := max(big/4, 64), max(big/16, 64)
	seconds := float64(in.end-in.start) / 1000
	text := func(path, content string) plannedFile {
		return plannedFile{path: path, head: []byte(content), size: int64(len(content))}
	}
	binary := func(path string, magic []byte, size int64) plannedFile {
		return plannedFile{path: path, head: magic, size: max(size, int64(len(magic)))}
	}
	slides := "presentation/" + presentation
	return []plannedFile{
		binary("video/webcams.webm", webmMagic, big),
		binary("deskshare/deskshare.webm", webmMagic, big),
		binary(slides+"/slide-1.png", pngMagic, image),
		binary(slides+"/thumbnails/thumb-1.png", pngMagic, thumb),
		text(slides+"/text/slide-1.txt", "Welcome\n"),
		text("shapes.svg", fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" version="1.1" width="1600" height="1200">
  <image id="image1" class="slide" in="0.0" out="%.1f" xlink:href="%s/slide-1.png" width="1600" height="1200" x="0" y="0" style="visibility:hidden"/>
  <g class="canvas" id="canvas1" image="image1" display="none"/>
</svg>
`, seconds, slides)),
		text("panzooms.xml", `<?xml version="1.0" encoding="UTF-8"?>
<recording id="panzoom_events">
  <event timestamp="0.0"><viewBox>0.0 0.0 1600.0 1200.0</viewBox></event>
</recording>
`),
		text("cursor.xml", `<?xml version="1.0" encoding="UTF-8"?>
<recording id="cursor_events">
  <event timestamp="0.0"><cursor>-1.0 -1.0</cursor></event>
</recording>
`),
		text("deskshare.xml", fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<recording id="deskshare_events">
  <event start_timestamp="0.0" stop_timestamp="%.1f" video_width="1280" video_height="720"/>
</recording>
`, seconds)),
		text("presentation_text.json", fmt.Sprintf(`{"%s":{"1":"Welcome"}}`+"\n", presentation)),
		text("captions.json", "[]\n"),
		text("events.xml", fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<recording meeting_id="%s" bbb_version="%s">
  <meeting id="%s" externalId="%s" name="%s" breakout="%t"/>
  <event timestamp="%d" module="PARTICIPANT" eventname="RecordStatusEvent"><status>true</status></event>
  <event timestamp="%d" module="PARTICIPANT" eventname="EndAndKickAllEvent"/>
</recording>
`, in.recordID, escape(s.cfg.BBBVersion), in.recordID, escape(in.meetingID), escape(in.name), in.isBreakout, in.start, in.end)),
	}
}

func escape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// publish produces the recordings of ended meetings.
func (s *Server) publish(ins []recordingInput) {
	for _, in := range ins {
		if err := s.produceRecording(in); err != nil {
			s.log.Error("publishing a recording failed", "record_id", in.recordID, "err", err)
		}
	}
}

// produceRecording publishes one recording: with RecordingsDir, the data
// files, then metadata.xml (temporary file and rename, so a watcher never
// sees it before the data), then the status marker; then it lists it.
func (s *Server) produceRecording(in recordingInput) error {
	sum := sha1.Sum([]byte(in.recordID + "/default.pdf"))
	presentation := hex.EncodeToString(sum[:]) + "-" + strconv.FormatInt(in.start+1, 10)
	files := s.plan(in, presentation)
	var size int64
	for _, f := range files {
		size += f.size
	}
	host := cmp.Or(in.host, "localhost")
	meta := bbb.Metadata{
		{Key: "isBreakout", Value: strconv.FormatBool(in.isBreakout)},
		{Key: "meetingId", Value: in.meetingID},
		{Key: "meetingName", Value: in.name},
	}
	rec := &recordingXML{
		ID:           in.recordID,
		State:        statePublished,
		Published:    true,
		StartTime:    in.start,
		EndTime:      in.end,
		Participants: in.participants,
		Meeting:      meetingXML{ID: in.recordID, ExternalID: in.meetingID, Name: in.name, Breakout: in.isBreakout},
		Meta:         append(meta, in.meta...),
		Playback: playbackXML{
			Format:         playbackFormat,
			Link:           fmt.Sprintf("https://%s/playback/%s/2.3/%s", host, playbackFormat, in.recordID),
			ProcessingTime: 2000 + (in.end-in.start)/20,
			Duration:       in.end - in.start,
			Extensions: extensionsXML{Preview: bbb.Preview{Images: []bbb.Image{{
				Alt: "Welcome", Width: 176, Height: 136,
				URL: fmt.Sprintf("https://%s/presentation/%s/presentation/%s/thumbnails/thumb-1.png", host, in.recordID, presentation),
			}}}},
			Size: size,
		},
		RawSize: size,
	}
	if len(in.breakoutRooms) > 0 {
		rec.BreakoutRooms = &breakoutRoomsXML{Rooms: in.breakoutRooms}
	}
	if in.isBreakout {
		rec.Breakout = &breakoutXML{ParentMeetingID: in.parentID, Sequence: in.sequence, MeetingID: in.recordID}
	}
	if s.cfg.RecordingsDir != "" {
		if err := s.writeRecording(rec, files); err != nil {
			return err
		}
	}
	s.recMu.Lock()
	s.recordings[rec.ID] = rec
	s.recMu.Unlock()
	s.log.Info("recording published", "record_id", rec.ID, "meeting_id", in.meetingID, "size", size)
	return nil
}

// writeRecording writes a recording the way bbb-record-core's steps leave
// it: the raw events and the recorded, archived and sanity markers, then the
// published files and metadata.xml, then the processed and published
// markers of the format.
func (s *Server) writeRecording(rec *recordingXML, files []plannedFile) error {
	for _, f := range files {
		if f.path == "events.xml" {
			raw := filepath.Join(s.cfg.RecordingsDir, "recording", "raw", rec.ID, "events.xml")
			if err := writeFileAtomic(raw, f.head); err != nil {
				return err
			}
		}
	}
	for _, step := range []string{"recorded", "archived", "sanity"} {
		if err := writeFileAtomic(s.statusMarker(step, rec.ID), nil); err != nil {
			return err
		}
	}
	return s.writeFormat(rec, playbackFormat, files)
}

// statusMarker is recording/status/<step>/<name>.done, where name is
// <record_id> or <record_id>-<format>.
func (s *Server) statusMarker(step, name string) string {
	return filepath.Join(s.cfg.RecordingsDir, "recording", "status", step, name+".done")
}

// writeFormat publishes one format of a recording: its files and
// metadata.xml under published/<format>/<record_id>/ (replacing an earlier
// publication: a rebuild), then the processed and published markers.
func (s *Server) writeFormat(rec *recordingXML, format string, files []plannedFile) error {
	dir := filepath.Join(s.cfg.RecordingsDir, statePublished, format, rec.ID)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	seed := sha256.Sum256([]byte(rec.ID + "/" + format))
	noise := rand.NewChaCha8(seed)
	for _, f := range files {
		if err := writeFile(filepath.Join(dir, filepath.FromSlash(f.path)), f, noise); err != nil {
			return err
		}
	}
	if err := writeMetadata(dir, rec); err != nil {
		return err
	}
	if err := writeFileAtomic(s.statusMarker("processed", rec.ID+"-"+format), nil); err != nil {
		return err
	}
	return writeFileAtomic(s.statusMarker(statePublished, rec.ID+"-"+format), nil)
}

// Extra playback formats PublishFormat knows, with the files each one
// publishes (names as bbb-record-core's scripts write them).
var extraFormats = map[string][]string{
	"video":       {"video-0.m4v", "captions.json"},
	"podcast":     {"audio.ogg"},
	"notes":       {"notes.pdf"},
	"screenshare": {"deskshare.webm", "captions.json"},
}

// PublishFormat publishes another playback format of a published
// recording, as BBB does when a format finishes processing after the
// presentation one (each format publishes on its own, and its
// post_publish scripts run with -f <format>). The video format says
// <state>available</state>, as BBB's does. With RecordingsDir only.
//
// What the simulator still omits: getRecordings lists the presentation
// format only; processing is instantaneous (the recorded marker and the
// published one appear together when the meeting ends, there is no window
// in which a recording is still processing); formats are not rebuilt
// together; no post_publish scripts run; unpublished/ and deleted/ hold the
// presentation format only; media files are noise with the right magic
// bytes, not playable.
func (s *Server) PublishFormat(recordID, format string) error {
	names, ok := extraFormats[format]
	if !ok || s.cfg.RecordingsDir == "" {
		return fmt.Errorf("sim: cannot publish format %q (known: video, podcast, notes, screenshare; needs RecordingsDir)", format)
	}
	s.recMu.Lock()
	defer s.recMu.Unlock()
	orig, ok := s.recordings[recordID]
	if !ok {
		return fmt.Errorf("sim: no recording %q", recordID)
	}
	rec := *orig
	size := s.cfg.RecordingFileSize
	var files []plannedFile
	var total int64
	for _, name := range names {
		f := plannedFile{path: name, head: webmMagic, size: max(size, int64(len(webmMagic)))}
		if strings.HasSuffix(name, ".json") {
			f = plannedFile{path: name, head: []byte("[]\n"), size: 3}
		}
		files = append(files, f)
		total += f.size
	}
	host := "localhost"
	if u, err := url.Parse(orig.Playback.Link); err == nil && u.Host != "" {
		host = u.Host
	}
	rec.Playback = playbackXML{
		Format:         format,
		Link:           fmt.Sprintf("https://%s/playback/%s/%s/", host, format, recordID),
		ProcessingTime: orig.Playback.ProcessingTime * 3,
		Duration:       orig.Playback.Duration,
		Size:           total,
	}
	if format == "video" {
		rec.State = "available"
	}
	return s.writeFormat(&rec, format, files)
}

// Rebuild publishes a recording's presentation format again, as
// `bbb-record --rebuild` does: the same record ID, the files written anew
// (new modification times), a new processing time in metadata.xml.
func (s *Server) Rebuild(recordID string) error {
	if s.cfg.RecordingsDir == "" {
		return errors.New("sim: Rebuild needs RecordingsDir")
	}
	s.recMu.Lock()
	defer s.recMu.Unlock()
	rec, ok := s.recordings[recordID]
	if !ok || rec.State != statePublished {
		return fmt.Errorf("sim: no published recording %q", recordID)
	}
	dir := s.recordingDir(statePublished, recordID)
	var files []plannedFile
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "metadata.xml" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files = append(files, plannedFile{path: filepath.ToSlash(rel), head: b, size: int64(len(b))})
		return nil
	})
	if err != nil {
		return err
	}
	rec.Playback.ProcessingTime++
	return s.writeFormat(rec, playbackFormat, files)
}

func writeFile(path string, f plannedFile, noise io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	out, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	_, err = w.Write(f.head)
	if pad := f.size - int64(len(f.head)); err == nil && pad > 0 {
		_, err = io.CopyN(w, noise, pad)
	}
	if err == nil {
		err = w.Flush()
	}
	return errors.Join(err, out.Close())
}

// writeMetadata (re)writes a recording's metadata.xml atomically.
func writeMetadata(dir string, rec *recordingXML) error {
	b, err := xml.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "metadata.xml"), append(append([]byte(xml.Header), b...), '\n'))
}

// writeFileAtomic writes a temporary file beside path and renames it into place.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err = errors.Join(err, tmp.Close()); err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
	}
	return err
}

// scanRecordings reads every recording under RecordingsDir, in each state.
func (s *Server) scanRecordings() map[string]*recordingXML {
	recs := make(map[string]*recordingXML)
	if s.cfg.RecordingsDir == "" {
		return recs
	}
	for _, state := range []string{statePublished, stateUnpublished, stateDeleted} {
		base := filepath.Join(s.cfg.RecordingsDir, state, playbackFormat)
		entries, err := os.ReadDir(base)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("reading recordings failed", "dir", base, "err", err)
			}
			continue
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(base, e.Name(), "metadata.xml"))
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					s.log.Warn("reading a recording failed", "record_id", e.Name(), "err", err)
				}
				continue
			}
			rec := new(recordingXML)
			if err := xml.Unmarshal(b, rec); err != nil {
				s.log.Warn("a recording's metadata.xml does not parse", "record_id", e.Name(), "err", err)
				continue
			}
			// The directory holding it says the state, as for bbb-web.
			rec.ID, rec.State, rec.Published = e.Name(), state, state == statePublished
			recs[rec.ID] = rec
		}
	}
	return recs
}

// splitList reads a comma-separated parameter.
func splitList(v string) []string {
	var out []string
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// recordingFilter is a getRecordings query.
type recordingFilter struct {
	recordIDs  []string // prefixes; when given, meetingIDs are ignored, as in bbb-web
	meetingIDs []string
	states     []string // nil means any
	meta       bbb.Metadata
}

func (f *recordingFilter) match(r *recordingXML) bool {
	switch {
	case len(f.recordIDs) > 0:
		if !slices.ContainsFunc(f.recordIDs, func(p string) bool { return strings.HasPrefix(r.ID, p) }) {
			return false
		}
	case len(f.meetingIDs) > 0:
		if !slices.Contains(f.meetingIDs, r.Meeting.ExternalID) {
			return false
		}
	}
	if f.states != nil && !slices.Contains(f.states, r.State) {
		return false
	}
	for _, want := range f.meta {
		i := slices.IndexFunc(r.Meta, func(m bbb.Meta) bool { return strings.EqualFold(m.Key, want.Key) })
		if i < 0 || !metaMatches(r.Meta[i].Value, want.Value) {
			return false
		}
	}
	return true
}

// metaMatches applies a meta_ filter value as bbb-web 2.6 does: a % at the
// start means "ends with", at the end "starts with", at both "contains";
// otherwise the value must be equal. Case counts.
func metaMatches(value, filter string) bool {
	prefix := strings.HasPrefix(filter, "%")
	suffix := len(filter) > 1 && strings.HasSuffix(filter, "%")
	core := filter
	if prefix {
		core = core[1:]
	}
	if suffix {
		core = core[:len(core)-1]
	}
	switch {
	case prefix && suffix:
		return strings.Contains(value, core)
	case prefix:
		return strings.HasSuffix(value, core)
	case suffix:
		return strings.HasPrefix(value, core)
	}
	return value == filter
}

func (s *Server) getRecordings(q *apiRequest) {
	f := recordingFilter{
		recordIDs:  splitList(q.get("recordID")),
		meetingIDs: splitList(q.get("meetingID")),
		states:     splitList(q.get("state")),
		meta:       bbb.MetaFromValues(q.params),
	}
	if len(f.states) == 0 {
		f.states = []string{statePublished, stateUnpublished}
	} else if slices.Contains(f.states, "any") {
		f.states = nil
	}
	offset, errOffset := intParam(q, "offset")
	limit, errLimit := intParam(q, "limit")
	if apiErr := cmp.Or(errOffset, errLimit); apiErr != nil {
		s.fail(q.w, apiErr)
		return
	}

	s.recMu.Lock()
	var matched []*recordingXML
	for _, r := range s.recordings {
		if f.match(r) {
			matched = append(matched, r)
		}
	}
	// Newest first.
	slices.SortFunc(matched, func(a, b *recordingXML) int {
		return cmp.Or(cmp.Compare(b.StartTime, a.StartTime), cmp.Compare(b.ID, a.ID))
	})
	total := len(matched)
	matched = matched[min(offset, len(matched)):]
	if limit > 0 && limit < len(matched) {
		matched = matched[:limit]
	}
	resp := bbb.GetRecordingsResponse{ReturnCode: bbb.ReturnSuccess, Recordings: make([]bbb.Recording, len(matched))}
	for i, r := range matched {
		resp.Recordings[i] = r.toAPI()
	}
	s.recMu.Unlock()
	if q.get("offset") != "" || q.get("limit") != "" {
		resp.TotalElements = &total
	}
	if len(matched) == 0 {
		resp.MessageKey, resp.Message = bbb.KeyNoRecordings, "There are no recordings for the meeting(s)."
	}
	s.respond(q.w, resp)
}

// recordIDsParam reads the recordID list that publish, update and delete need.
func recordIDsParam(q *apiRequest) ([]string, *bbb.APIError) {
	ids := splitList(q.get("recordID"))
	if len(ids) == 0 {
		return nil, bbb.NewError(keyMissingParamRecordID, "You must specify one or more recordID(s).")
	}
	return ids, nil
}

func recordingsNotFound() *bbb.APIError {
	return bbb.NewError(bbb.KeyNotFound, "We could not find recordings")
}

// changeRecordings applies change to every listed recording that exists (and
// is not deleted unless withDeleted), and reports whether any did.
func (s *Server) changeRecordings(ids []string, withDeleted bool, change func(*recordingXML) error) (bool, error) {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	found := false
	for _, id := range ids {
		r := s.recordings[id]
		if r == nil || r.State == stateDeleted && !withDeleted {
			continue
		}
		found = true
		if err := change(r); err != nil {
			return true, err
		}
	}
	return found, nil
}

// moveLocked puts a recording into a state, moving its directory as bbb-web
// does between published/, unpublished/ and deleted/; s.recMu must be held.
func (s *Server) moveLocked(r *recordingXML, state string) error {
	if r.State == state {
		return nil
	}
	if s.cfg.RecordingsDir != "" {
		from, to := s.recordingDir(r.State, r.ID), s.recordingDir(state, r.ID)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		if err := os.Rename(from, to); err != nil {
			return err
		}
	}
	r.State, r.Published = state, state == statePublished
	return s.saveLocked(r)
}

// saveLocked rewrites a recording's metadata.xml; s.recMu must be held.
func (s *Server) saveLocked(r *recordingXML) error {
	if s.cfg.RecordingsDir == "" {
		return nil
	}
	return writeMetadata(s.recordingDir(r.State, r.ID), r)
}

func (s *Server) answerChange(q *apiRequest, found bool, err error, ok any) {
	switch {
	case err != nil:
		s.log.Error("changing a recording failed", "err", err)
		s.fail(q.w, bbb.NewError(bbb.KeyInternalError, "Changing the recording failed: "+err.Error()))
	case !found:
		s.fail(q.w, recordingsNotFound())
	default:
		s.respond(q.w, ok)
	}
}

func (s *Server) publishRecordings(q *apiRequest) {
	ids, apiErr := recordIDsParam(q)
	if apiErr != nil {
		s.fail(q.w, apiErr)
		return
	}
	value := strings.TrimSpace(q.get("publish"))
	if value == "" {
		s.fail(q.w, bbb.NewError(keyMissingParamPublish, "You must specify a publish value true or false."))
		return
	}
	publish := parseBool(value)
	state := stateUnpublished
	if publish {
		state = statePublished
	}
	found, err := s.changeRecordings(ids, false, func(r *recordingXML) error { return s.moveLocked(r, state) })
	s.answerChange(q, found, err, bbb.PublishRecordingsResponse{ReturnCode: bbb.ReturnSuccess, Published: publish})
}

func (s *Server) deleteRecordings(q *apiRequest) {
	ids, apiErr := recordIDsParam(q)
	if apiErr != nil {
		s.fail(q.w, apiErr)
		return
	}
	found, err := s.changeRecordings(ids, true, func(r *recordingXML) error { return s.moveLocked(r, stateDeleted) })
	s.answerChange(q, found, err, bbb.DeleteRecordingsResponse{ReturnCode: bbb.ReturnSuccess, Deleted: true})
}

// updateRecordings sets the given meta_ parameters; an empty value removes
// the entry, as in bbb-web.
func (s *Server) updateRecordings(q *apiRequest) {
	ids, apiErr := recordIDsParam(q)
	if apiErr != nil {
		s.fail(q.w, apiErr)
		return
	}
	updates := bbb.MetaFromValues(q.params)
	found, err := s.changeRecordings(ids, false, func(r *recordingXML) error {
		meta := slices.Clone(r.Meta) // getRecordings answers may still share the old slice
		for _, u := range updates {
			i := slices.IndexFunc(meta, func(m bbb.Meta) bool { return strings.EqualFold(m.Key, u.Key) })
			switch {
			case u.Value == "" && i >= 0:
				meta = slices.Delete(meta, i, i+1)
			case u.Value == "":
			case i >= 0:
				meta[i].Value = u.Value
			default:
				meta = append(meta, u)
			}
		}
		r.Meta = meta
		return s.saveLocked(r)
	})
	s.answerChange(q, found, err, bbb.UpdateRecordingsResponse{ReturnCode: bbb.ReturnSuccess, Updated: true})
}
