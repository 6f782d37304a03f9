package sim

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/xml"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
	"github.com/bbb-agent/bbb-agent/recordings"
)

// metadataFile is metadata.xml as a reader outside the simulator sees it.
type metadataFile struct {
	ID           string       `xml:"id"`
	State        string       `xml:"state"`
	Published    bool         `xml:"published"`
	StartTime    int64        `xml:"start_time"`
	EndTime      int64        `xml:"end_time"`
	Participants int          `xml:"participants"`
	Meeting      meetingXML   `xml:"meeting"`
	Meta         bbb.Metadata `xml:"meta"`
	Breakout     *struct {
		ParentMeetingID string `xml:"parentMeetingId,attr"`
		Sequence        int    `xml:"sequence,attr"`
	} `xml:"breakout"`
	BreakoutRooms []string `xml:"breakoutRooms>breakoutRoom"`
	Playback      struct {
		Format         string      `xml:"format"`
		Link           string      `xml:"link"`
		ProcessingTime int64       `xml:"processing_time"`
		Duration       int64       `xml:"duration"`
		Images         []bbb.Image `xml:"extensions>preview>images>image"`
		Size           int64       `xml:"size"`
	} `xml:"playback"`
	RawSize int64 `xml:"raw_size"`
}

func readMetadata(t *testing.T, dir string) metadataFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "metadata.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), xml.Header) {
		t.Errorf("metadata.xml has no XML declaration")
	}
	var md metadataFile
	if err := xml.Unmarshal(b, &md); err != nil {
		t.Fatalf("metadata.xml does not parse: %v\n%s", err, b)
	}
	return md
}

// record runs a recorded meeting with two users for ten minutes and returns its record ID.
func (e *env) record(meetingID string, extra url.Values) string {
	e.t.Helper()
	v := vals("meetingID", meetingID, "record", "true")
	for k, vs := range extra {
		v[k] = vs
	}
	cr := e.create(v)
	env, _ := e.join(vals("meetingID", meetingID, "fullName", "Teacher", "role", "moderator"))
	wantSuccess(e.t, env, bbb.KeySuccessfullyJoined)
	if _, err := e.sim.AddAttendees(meetingID, AttendeeSpec{Count: 1}); err != nil {
		e.t.Fatal(err)
	}
	e.clock.Advance(10 * time.Minute)
	wantSuccess(e.t, e.get(bbb.CallEnd, vals("meetingID", meetingID), nil), bbb.KeySentEndMeetingRequest)
	e.clock.Advance(time.Minute)
	return cr.InternalMeetingID
}

func TestRecordingWritten(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, withRecordings(dir))
	start := e.clock.Now().UnixMilli()
	id := e.record("rec", vals("name", "Lecture & Lab", "meta_origin", "Greenlight", "meta_gl-listed", "false"))
	host := e.ts.Listener.Addr().String()
	recDir := filepath.Join(dir, "published", "presentation", id)

	md := readMetadata(t, recDir)
	if md.ID != id || md.State != "published" || !md.Published || md.StartTime != start ||
		md.EndTime != start+600000 || md.Participants != 2 {
		t.Errorf("metadata.xml: %+v", md)
	}
	if md.Meeting != (meetingXML{ID: id, ExternalID: "rec", Name: "Lecture & Lab", Breakout: false}) {
		t.Errorf("<meeting>: %+v", md.Meeting)
	}
	for k, want := range map[string]string{"origin": "Greenlight", "gl-listed": "false", "isBreakout": "false", "meetingId": "rec", "meetingName": "Lecture & Lab"} {
		if got, ok := md.Meta.Get(k); !ok || got != want {
			t.Errorf("<meta> %s = %q, want %q", k, got, want)
		}
	}
	pb := md.Playback
	if pb.Format != "presentation" || pb.Link != "https://"+host+"/playback/presentation/2.3/"+id || pb.Duration != 600000 || pb.ProcessingTime <= 0 {
		t.Errorf("<playback>: %+v", pb)
	}
	if len(pb.Images) != 1 || pb.Images[0].Width != 176 || pb.Images[0].Height != 136 || pb.Images[0].Alt == "" {
		t.Fatalf("preview images %+v", pb.Images)
	}
	thumb, ok := strings.CutPrefix(pb.Images[0].URL, "https://"+host+"/presentation/"+id+"/")
	if !ok || !strings.HasSuffix(thumb, "/thumbnails/thumb-1.png") {
		t.Errorf("preview URL %q", pb.Images[0].URL)
	}
	if _, err := os.Stat(filepath.Join(recDir, filepath.FromSlash(thumb))); err != nil {
		t.Errorf("the preview image is not on disk: %v", err)
	}

	// The sizes are the real byte counts of the data files.
	var total int64
	files := map[string]int64{}
	err := filepath.WalkDir(recDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.Contains(d.Name(), ".tmp-") {
			t.Errorf("temporary file left behind: %s", path)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(recDir, path)
		files[filepath.ToSlash(rel)] = info.Size()
		if d.Name() != "metadata.xml" {
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if pb.Size != total || md.RawSize != total {
		t.Errorf("size %d, raw_size %d, want the %d bytes on disk", pb.Size, md.RawSize, total)
	}
	for _, name := range []string{"video/webcams.webm", "deskshare/deskshare.webm"} {
		if files[name] != 1000 {
			t.Errorf("%s is %d bytes, want RecordingFileSize", name, files[name])
		}
	}
	for _, name := range []string{"shapes.svg", "panzooms.xml", "cursor.xml", "events.xml", "deskshare.xml"} {
		if _, ok := files[name]; !ok {
			t.Errorf("no %s in %v", name, files)
		}
	}
	slides := 0
	for name := range files {
		if strings.HasPrefix(name, "presentation/") && strings.HasSuffix(name, "/slide-1.png") {
			slides++
		}
	}
	if slides != 1 {
		t.Errorf("%d slide-1.png files in %v", slides, files)
	}
	if _, err := os.Stat(filepath.Join(dir, "recording", "status", "published", id+"-presentation.done")); err != nil {
		t.Errorf("no status marker: %v", err)
	}

	env, recs := e.recordings(nil)
	wantSuccess(t, env, "")
	if len(recs) != 1 {
		t.Fatalf("getRecordings lists %d recordings", len(recs))
	}
	r := recs[0]
	if r.RecordID != id || r.MeetingID != "rec" || r.InternalMeetingID != id || r.Name != "Lecture & Lab" || !r.Published ||
		r.State != "published" || r.Size != total || r.RawSize != total || r.Participants != 2 || r.StartTime != start {
		t.Errorf("getRecordings: %+v", r)
	}
	if len(r.Playback) != 1 || r.Playback[0].Type != "presentation" || r.Playback[0].URL != pb.Link || r.Playback[0].Length != 10 ||
		r.Playback[0].Preview == nil || len(r.Playback[0].Preview.Images) != 1 {
		t.Errorf("playback %+v", r.Playback)
	}
	if v, _ := r.Metadata.Get("origin"); v != "Greenlight" {
		t.Errorf("metadata %+v", r.Metadata)
	}
}

func TestRecordingOnlyWhenRecordedAndJoined(t *testing.T) {
	tests := []struct {
		name   string
		record string
		join   bool
		dir    bool
		want   int
	}{
		{"recorded and joined", "true", true, true, 1},
		{"recorded, nobody joined", "true", false, true, 0},
		{"not recorded", "false", true, true, 0},
		{"recorded, in memory only", "true", true, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var opts []func(*Config)
			if tt.dir {
				opts = append(opts, withRecordings(dir))
			}
			e := newEnv(t, opts...)
			e.create(vals("meetingID", "mm", "record", tt.record))
			if tt.join {
				if _, err := e.sim.AddAttendees("mm", AttendeeSpec{Count: 1}); err != nil {
					t.Fatal(err)
				}
			}
			wantSuccess(t, e.get(bbb.CallEnd, vals("meetingID", "mm"), nil), bbb.KeySentEndMeetingRequest)
			env, recs := e.recordings(nil)
			if len(recs) != tt.want {
				t.Fatalf("%d recordings, want %d", len(recs), tt.want)
			}
			if tt.want == 0 {
				wantSuccess(t, env, bbb.KeyNoRecordings)
			} else if recs[0].Size <= 0 {
				t.Errorf("size %d", recs[0].Size)
			}
			wantDirs := tt.want
			if !tt.dir {
				wantDirs = 0
			}
			if entries, _ := os.ReadDir(filepath.Join(dir, "published", "presentation")); len(entries) != wantDirs {
				t.Errorf("%d recording directories, want %d", len(entries), wantDirs)
			}
		})
	}
}

func TestBreakoutRecordings(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, withRecordings(dir))
	parent := e.create(vals("meetingID", "class", "record", "true"))
	if _, err := e.sim.AddAttendees("class", AttendeeSpec{Count: 2}); err != nil {
		t.Fatal(err)
	}
	rooms, err := e.sim.AddBreakouts("class", BreakoutSpec{Rooms: 2, AttendeesPerRoom: 1, Record: true})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5 * time.Minute)
	if err := e.sim.EndMeeting("class", true); err != nil {
		t.Fatal(err)
	}
	_, recs := e.recordings(nil)
	if len(recs) != 3 {
		t.Fatalf("%d recordings, want the parent's and two rooms'", len(recs))
	}
	md := readMetadata(t, filepath.Join(dir, "published", "presentation", parent.InternalMeetingID))
	if len(md.BreakoutRooms) != 2 || md.Meeting.Breakout {
		t.Errorf("parent's metadata.xml: %+v", md)
	}
	for _, r := range recs {
		if r.MeetingID == "class" {
			continue
		}
		if !r.IsBreakout || !slices.Contains(rooms, r.MeetingID) {
			t.Errorf("room recording %+v", r)
		}
		md := readMetadata(t, filepath.Join(dir, "published", "presentation", r.RecordID))
		if v, _ := md.Meta.Get("isBreakout"); v != "true" || !md.Meeting.Breakout || md.Breakout == nil || md.Breakout.ParentMeetingID != parent.InternalMeetingID {
			t.Errorf("room's metadata.xml: %+v", md)
		}
	}
}

func TestGetRecordingsFilters(t *testing.T) {
	e := newEnv(t)
	a := e.record("m1", vals("meta_course", "math"))
	b := e.record("m1", nil)
	c := e.record("m2", vals("meta_course", "bio"))
	sum := sha1.Sum([]byte("m1"))
	m1Prefix := hex.EncodeToString(sum[:])

	tests := []struct {
		name    string
		v       url.Values
		want    []string
		wantErr string
	}{
		{name: "all, newest first", v: nil, want: []string{c, b, a}},
		{name: "one meeting", v: vals("meetingID", "m1"), want: []string{b, a}},
		{name: "meeting list", v: vals("meetingID", "m1, m2"), want: []string{c, b, a}},
		{name: "unknown meeting", v: vals("meetingID", "m9"), want: nil},
		{name: "one record", v: vals("recordID", a), want: []string{a}},
		{name: "record list", v: vals("recordID", a+","+c), want: []string{c, a}},
		{name: "record prefix", v: vals("recordID", m1Prefix), want: []string{b, a}},
		{name: "recordID wins over meetingID", v: vals("recordID", c, "meetingID", "m1"), want: []string{c}},
		{name: "meta", v: vals("meta_course", "math"), want: []string{a}},
		{name: "meta starts with", v: vals("meta_course", "ma%"), want: []string{a}},
		{name: "meta ends with", v: vals("meta_course", "%io"), want: []string{c}},
		{name: "meta contains", v: vals("meta_course", "%a%"), want: []string{a}},
		{name: "meta value case counts", v: vals("meta_course", "Math"), want: nil},
		{name: "meta key in any case", v: vals("meta_Course", "bio"), want: []string{c}},
		{name: "meta and meeting", v: vals("meta_course", "bio", "meetingID", "m1"), want: nil},
		{name: "state published", v: vals("state", "published"), want: []string{c, b, a}},
		{name: "state unpublished", v: vals("state", "unpublished"), want: nil},
		{name: "state any", v: vals("state", "any"), want: []string{c, b, a}},
		{name: "first page", v: vals("limit", "2"), want: []string{c, b}},
		{name: "middle page", v: vals("offset", "1", "limit", "1"), want: []string{b}},
		{name: "last page", v: vals("offset", "2", "limit", "2"), want: []string{a}},
		{name: "past the end", v: vals("offset", "3"), want: nil},
		{name: "bad limit", v: vals("limit", "ten"), wantErr: bbb.KeyValidationError},
		{name: "negative offset", v: vals("offset", "-1"), wantErr: bbb.KeyValidationError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, recs := e.recordings(tt.v)
			if tt.wantErr != "" {
				wantFailed(t, env, tt.wantErr)
				return
			}
			var got []string
			for _, r := range recs {
				got = append(got, r.RecordID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if len(tt.want) == 0 {
				wantSuccess(t, env, bbb.KeyNoRecordings)
			} else {
				wantSuccess(t, env, "")
			}
		})
	}
}

func TestPublishUpdateDeleteRecordings(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, withRecordings(dir))
	r := e.record("m1", vals("meta_origin", "gl", "meta_gone", "soon"))
	other := e.record("m2", nil)
	stateDir := func(state string) string { return filepath.Join(dir, state, "presentation", r) }
	states := func(v url.Values) map[string]string {
		t.Helper()
		_, recs := e.recordings(v)
		out := map[string]string{}
		for _, rec := range recs {
			out[rec.RecordID] = rec.State
			if rec.Published != (rec.State == "published") {
				t.Errorf("%s: published %v in state %s", rec.RecordID, rec.Published, rec.State)
			}
		}
		return out
	}
	call := func(call string, v url.Values, out any) bbb.Envelope { return e.get(call, v, out) }

	// Unpublish: the directory moves to unpublished/.
	var pr bbb.PublishRecordingsResponse
	wantSuccess(t, call(bbb.CallPublishRecordings, vals("recordID", r, "publish", "false"), &pr), "")
	if pr.Published {
		t.Error("publish=false answered published=true")
	}
	if _, err := os.Stat(stateDir("published")); !os.IsNotExist(err) {
		t.Errorf("published copy still there: %v", err)
	}
	if md := readMetadata(t, stateDir("unpublished")); md.State != "unpublished" || md.Published {
		t.Errorf("unpublished metadata.xml: %+v", md)
	}
	if _, err := os.Stat(filepath.Join(stateDir("unpublished"), "video", "webcams.webm")); err != nil {
		t.Errorf("data files did not move: %v", err)
	}
	if got := states(nil); got[r] != "unpublished" || got[other] != "published" {
		t.Errorf("states %v", got)
	}
	if got := states(vals("state", "published")); len(got) != 1 || got[other] == "" {
		t.Errorf("published only: %v", got)
	}

	// Publish again.
	wantSuccess(t, call(bbb.CallPublishRecordings, vals("recordID", r, "publish", "true"), &pr), "")
	if !pr.Published || readMetadata(t, stateDir("published")).State != "published" {
		t.Error("republishing failed")
	}

	// Update the metadata: set, add, and remove with an empty value.
	var ur bbb.UpdateRecordingsResponse
	wantSuccess(t, call(bbb.CallUpdateRecordings, vals("recordID", r, "meta_origin", "moodle", "meta_new", "v", "meta_gone", ""), &ur), "")
	if !ur.Updated {
		t.Error("updated=false")
	}
	md := readMetadata(t, stateDir("published"))
	if v, _ := md.Meta.Get("origin"); v != "moodle" {
		t.Errorf("origin %q", v)
	}
	if v, _ := md.Meta.Get("new"); v != "v" {
		t.Errorf("new %q", v)
	}
	if _, ok := md.Meta.Get("gone"); ok {
		t.Error("meta_gone= did not remove the entry")
	}
	if _, recs := e.recordings(vals("meta_origin", "moodle")); len(recs) != 1 || recs[0].RecordID != r {
		t.Errorf("getRecordings by the new metadata: %+v", recs)
	}

	// Delete: the directory moves to deleted/, and the recording leaves the default listing.
	var dr bbb.DeleteRecordingsResponse
	wantSuccess(t, call(bbb.CallDeleteRecordings, vals("recordID", r), &dr), "")
	if !dr.Deleted || readMetadata(t, stateDir("deleted")).State != "deleted" {
		t.Error("deleting failed")
	}
	if got := states(nil); len(got) != 1 || got[other] == "" {
		t.Errorf("default listing after delete: %v", got)
	}
	if got := states(vals("state", "deleted")); got[r] != "deleted" || len(got) != 1 {
		t.Errorf("deleted listing: %v", got)
	}
	wantSuccess(t, call(bbb.CallDeleteRecordings, vals("recordID", r), &dr), "")

	failures := []struct {
		name, call string
		v          url.Values
		wantKey    string
	}{
		{"publish a deleted recording", bbb.CallPublishRecordings, vals("recordID", r, "publish", "true"), bbb.KeyNotFound},
		{"update a deleted recording", bbb.CallUpdateRecordings, vals("recordID", r, "meta_x", "y"), bbb.KeyNotFound},
		{"publish unknown", bbb.CallPublishRecordings, vals("recordID", "nope", "publish", "true"), bbb.KeyNotFound},
		{"update unknown", bbb.CallUpdateRecordings, vals("recordID", "nope", "meta_x", "y"), bbb.KeyNotFound},
		{"delete unknown", bbb.CallDeleteRecordings, vals("recordID", "nope"), bbb.KeyNotFound},
		{"publish without recordID", bbb.CallPublishRecordings, vals("publish", "true"), keyMissingParamRecordID},
		{"publish without publish", bbb.CallPublishRecordings, vals("recordID", other), keyMissingParamPublish},
		{"update without recordID", bbb.CallUpdateRecordings, vals("meta_x", "y"), keyMissingParamRecordID},
		{"delete without recordID", bbb.CallDeleteRecordings, nil, keyMissingParamRecordID},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			wantFailed(t, call(tt.call, tt.v, nil), tt.wantKey)
		})
	}
	// updateRecordings also answers POST.
	wantSuccess(t, e.xmlCall(http.MethodPost, e.signed(bbb.CallUpdateRecordings, vals("recordID", other, "meta_x", "y")), nil, &ur), "")
}

func TestRestartRescansRecordings(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, withRecordings(dir))
	kept := e.record("m1", vals("meta_origin", "gl"))
	hidden := e.record("m2", nil)
	wantSuccess(t, e.get(bbb.CallPublishRecordings, vals("recordID", hidden, "publish", "false"), nil), "")
	_, before := e.recordings(nil)

	// Debris a crash could leave: a recording without metadata.xml, and a broken one.
	if err := os.MkdirAll(filepath.Join(dir, "published", "presentation", "partial", "video"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "published", "presentation", "broken"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "published", "presentation", "broken", "metadata.xml"), []byte("<recording><id>"), 0o644); err != nil {
		t.Fatal(err)
	}

	restarted := newEnv(t, withRecordings(dir))
	_, after := restarted.recordings(nil)
	if len(after) != 2 {
		t.Fatalf("after a restart: %d recordings, want 2", len(after))
	}
	for i := range before {
		b, a := before[i], after[i]
		if a.RecordID != b.RecordID || a.State != b.State || a.Size != b.Size || a.MeetingID != b.MeetingID || a.StartTime != b.StartTime {
			t.Errorf("after a restart:\n%+v\nbefore:\n%+v", a, b)
		}
	}
	if _, recs := restarted.recordings(vals("meta_origin", "gl")); len(recs) != 1 || recs[0].RecordID != kept {
		t.Errorf("metadata lost in the restart: %+v", recs)
	}
	// Reset reads the directory again too.
	restarted.sim.Reset()
	if _, recs := restarted.recordings(nil); len(recs) != 2 {
		t.Errorf("after Reset: %d recordings", len(recs))
	}
}

func TestRecordingFormatsMarkersAndRebuild(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, withRecordings(dir))
	id := e.record("formats", vals("name", "Formats"))
	for _, m := range []string{"recorded/" + id, "archived/" + id, "sanity/" + id, "processed/" + id + "-presentation", "published/" + id + "-presentation"} {
		if _, err := os.Stat(filepath.Join(dir, "recording", "status", filepath.FromSlash(m)+".done")); err != nil {
			t.Errorf("status marker %s: %v", m, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "recording", "raw", id, "events.xml")); err != nil {
		t.Errorf("raw events.xml: %v", err)
	}
	if n, err := recordings.ProcessingBacklog(dir); err != nil || n != 0 {
		t.Errorf("ProcessingBacklog = %d, %v; want 0 once published", n, err)
	}
	found, err := recordings.Lookup(dir, id, "")
	if err != nil || len(found) != 1 {
		t.Fatalf("Lookup = %+v, %v; want the presentation format", found, err)
	}
	before := found[0].Fingerprint

	// The video format publishes later, on its own.
	if err := e.sim.PublishFormat(id, "video"); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.PublishFormat(id, "holograms"); err == nil {
		t.Error("PublishFormat accepted an unknown format")
	}
	video, err := recordings.ReadMetadata(filepath.Join(dir, "published", "video", id))
	if err != nil {
		t.Fatal(err)
	}
	if video.State != "available" || !video.Published || video.Formats[0].Type != "video" || video.RecordID != id || video.ExternalID != "formats" {
		t.Errorf("video metadata = %+v", video)
	}
	if _, err := os.Stat(filepath.Join(dir, "recording", "status", "published", id+"-video.done")); err != nil {
		t.Errorf("video published marker: %v", err)
	}
	if found, _ := recordings.Lookup(dir, id, ""); len(found) != 2 {
		t.Errorf("Lookup finds %d formats, want presentation and video", len(found))
	}

	// A rebuild publishes the same ID again: the content fingerprint changes.
	if err := e.sim.Rebuild(id); err != nil {
		t.Fatal(err)
	}
	found, _ = recordings.Lookup(dir, id, "presentation")
	if len(found) != 1 || found[0].Fingerprint == before {
		t.Errorf("after a rebuild: %+v, want a new fingerprint", found)
	}
	md, err := recordings.ReadMetadata(found[0].Dir)
	if err != nil || md.RecordID != id || md.Formats[0].Type != "presentation" {
		t.Errorf("rebuilt metadata = %+v, %v", md, err)
	}
}
