package bbb

import (
	"bytes"
	"encoding/xml"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func sampleMeeting() Meeting {
	created := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	ms := created.UnixMilli()
	freeJoin := false
	return Meeting{
		MeetingName: "Physics 101", MeetingID: "physics-101",
		InternalMeetingID: InternalMeetingID("physics-101", ms), CreateTime: ms, CreateDate: CreateDate(created),
		VoiceBridge: "70757", DialNumber: "613-555-1234", AttendeePW: "ap", ModeratorPW: "mp",
		Running: true, HasUserJoined: true, Recording: false, StartTime: ms + 1200,
		ParticipantCount: 2, ListenerCount: 1, VoiceParticipantCount: 1, VideoCount: 1, MaxUsers: 50, ModeratorCount: 1,
		Attendees: []Attendee{
			{UserID: "w_abc", FullName: "Ada", Role: RoleModerator, IsPresenter: true, HasJoinedVoice: true, HasVideo: true, ClientType: "HTML5"},
			{UserID: "w_def", FullName: "Bob & <Co>", Role: RoleViewer, IsListeningOnly: true, ClientType: "HTML5"},
		},
		Metadata:        Metadata{{"bbb-origin", "Greenlight"}, {"server-tag", "gpu;eu!"}},
		IsBreakout:      true,
		ParentMeetingID: InternalMeetingID("physics", ms),
		Sequence:        1,
		FreeJoin:        &freeJoin,
	}
}

func goldenCases() map[string]any {
	m := sampleMeeting()
	parent := m
	parent.IsBreakout, parent.ParentMeetingID, parent.Sequence, parent.FreeJoin = false, "", 0, nil
	parent.BreakoutRooms = []string{m.InternalMeetingID}
	rec := Recording{
		RecordID: m.InternalMeetingID, MeetingID: m.MeetingID, InternalMeetingID: m.InternalMeetingID,
		Name: m.MeetingName, Published: true, State: "published", StartTime: m.StartTime, EndTime: m.StartTime + 3600000,
		Participants: 3, RawSize: 951067, Size: 4096, Metadata: Metadata{{"isBreakout", "false"}, {"meetingName", "Physics 101"}},
		Playback: []PlaybackFormat{{Type: "presentation", URL: "https://bbb1.example.com/playback/presentation/2.3/" + m.InternalMeetingID,
			ProcessingTime: 7177, Length: 60, Size: 4096,
			Preview: &Preview{Images: []Image{{Alt: "Welcome", Height: 136, Width: 176, URL: "https://bbb1.example.com/thumb-1.png"}}}}},
	}
	return map[string]any{
		"root":             RootResponse{ReturnCode: ReturnSuccess, Version: "2.0", APIVersion: "2.0", BBBVersion: "3.0.0"},
		"failed":           FailedResponse(ChecksumError()),
		"create":           CreateResponse{ReturnCode: ReturnSuccess, MeetingID: m.MeetingID, InternalMeetingID: m.InternalMeetingID, ParentMeetingID: "bbb-none", AttendeePW: "ap", ModeratorPW: "mp", CreateTime: m.CreateTime, VoiceBridge: "70757", DialNumber: "613-555-1234", CreateDate: m.CreateDate},
		"create_duplicate": CreateResponse{ReturnCode: ReturnSuccess, MeetingID: m.MeetingID, InternalMeetingID: m.InternalMeetingID, ParentMeetingID: "bbb-none", AttendeePW: "ap", ModeratorPW: "mp", CreateTime: m.CreateTime, VoiceBridge: "70757", CreateDate: m.CreateDate, MessageKey: KeyDuplicateWarning, Message: "This conference was already in existence and may currently be in progress."},
		"join":             JoinResponse{ReturnCode: ReturnSuccess, MessageKey: KeySuccessfullyJoined, Message: "You have joined successfully.", MeetingID: m.InternalMeetingID, UserID: "w_abc", AuthToken: "tok", SessionToken: "sess", GuestStatus: "ALLOW", URL: "https://bbb1.example.com/html5client/join?sessionToken=sess"},
		"end":              EndResponse{ReturnCode: ReturnSuccess, MessageKey: KeySentEndMeetingRequest, Message: "A request to end the meeting was sent."},
		"is_running":       IsMeetingRunningResponse{ReturnCode: ReturnSuccess, Running: true},
		"meeting_info":     GetMeetingInfoResponse{ReturnCode: ReturnSuccess, Meeting: m},
		"meetings":         GetMeetingsResponse{ReturnCode: ReturnSuccess, Meetings: []Meeting{parent, m}},
		"meetings_none":    GetMeetingsResponse{ReturnCode: ReturnSuccess, MessageKey: KeyNoMeetings, Message: "no meetings were found on this server"},
		"insert_document":  InsertDocumentResponse{ReturnCode: ReturnSuccess, MessageKey: KeyDocumentInserted, Message: "Document successfully inserted."},
		"recordings":       GetRecordingsResponse{ReturnCode: ReturnSuccess, Recordings: []Recording{rec}},
		"recordings_none":  GetRecordingsResponse{ReturnCode: ReturnSuccess, MessageKey: KeyNoRecordings, Message: "There are no recordings for the meeting(s)."},
		"publish":          PublishRecordingsResponse{ReturnCode: ReturnSuccess, Published: true},
		"update":           UpdateRecordingsResponse{ReturnCode: ReturnSuccess, Updated: true},
		"delete":           DeleteRecordingsResponse{ReturnCode: ReturnSuccess, Deleted: true},
	}
}

// TestGoldenXML pins the XML of every response type. Run with -update to
// rewrite the files after a deliberate change, and review the diff.
func TestGoldenXML(t *testing.T) {
	for name, v := range goldenCases() {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteXML(&buf, v); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "golden", name+".xml")
			if *update {
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update once to create it)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("XML differs from %s:\n got: %s\nwant: %s", path, buf.Bytes(), want)
			}
			// What we write, we read back to the same value.
			back := reflect.New(reflect.TypeOf(v))
			if err := DecodeResponse(name, want, back.Interface()); err != nil && name != "failed" {
				t.Fatal(err)
			}
			got := back.Elem().Interface()
			if name != "failed" && !reflect.DeepEqual(normalize(got), normalize(v)) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, v)
			}
		})
	}
}

// normalize clears the XMLName fields that decoding fills in.
func normalize(v any) any {
	rv := reflect.New(reflect.TypeOf(v)).Elem()
	rv.Set(reflect.ValueOf(v))
	if f := rv.FieldByName("XMLName"); f.IsValid() {
		f.Set(reflect.ValueOf(xml.Name{}))
	}
	return rv.Interface()
}

func TestDecodeResponseFailed(t *testing.T) {
	err := DecodeResponse("create", []byte(`<response><returncode>FAILED</returncode><messageKey>idNotUnique</messageKey><message>taken</message></response>`), nil)
	if !errors.Is(err, ErrIDNotUnique) {
		t.Fatalf("err = %v", err)
	}
	for _, body := range []string{"", "<html>502 Bad Gateway</html>", "<response><returncode>MAYBE</returncode></response>"} {
		if err := DecodeResponse("create", []byte(body), nil); err == nil {
			t.Errorf("body %q accepted", body)
		}
	}
}

func TestMetadataSkipsInvalidNames(t *testing.T) {
	b, err := xml.Marshal(struct {
		XMLName xml.Name `xml:"r"`
		M       Metadata `xml:"metadata"`
	}{M: Metadata{{"ok-key", "1"}, {"bad key", "2"}, {"1digit", "3"}, {"xmlns", "4"}}})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `<r><metadata><ok-key>1</ok-key></metadata></r>` {
		t.Fatalf("got %s", b)
	}
}

// TestAppendMeetings: getMeetings assembled from runs of meetings encoded
// apart is byte for byte MarshalResponse's answer for all of them.
func TestAppendMeetings(t *testing.T) {
	m := sampleMeeting()
	parent := m
	parent.IsBreakout, parent.ParentMeetingID, parent.Sequence, parent.FreeJoin = false, "", 0, nil
	parent.BreakoutRooms = []string{m.InternalMeetingID}
	bare := Meeting{MeetingName: "bad \xff utf-8 \x01 ]]> \"quoted\"", MeetingID: "bare"}
	all := []Meeting{parent, m, bare, m, parent}
	want, err := MarshalResponse(GetMeetingsResponse{ReturnCode: ReturnSuccess, Meetings: all})
	if err != nil {
		t.Fatal(err)
	}
	for _, runs := range [][]int{{5}, {1, 4}, {2, 0, 3}, {1, 1, 1, 1, 1}} {
		got := []byte(GetMeetingsHead)
		at := 0
		for _, n := range runs {
			if got, err = AppendMeetings(got, all[at:at+n]); err != nil {
				t.Fatal(err)
			}
			at += n
		}
		got = append(got, GetMeetingsTail...)
		if !bytes.Equal(got, want) {
			t.Errorf("runs %v:\n got %s\nwant %s", runs, got, want)
		}
	}
	if got, err := AppendMeetings([]byte("kept"), nil); err != nil || string(got) != "kept" {
		t.Errorf("no meetings: %q, %v", got, err)
	}
}
