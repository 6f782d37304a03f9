package sim

import (
	"bytes"
	"encoding/xml"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
)

func TestRoot(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BBBVersion = "2.7.9" })
	for _, path := range []string{"/bigbluebutton/api", "/bigbluebutton/api/"} {
		var root bbb.RootResponse
		wantSuccess(t, e.xmlCall(http.MethodGet, e.ts.URL+path, nil, &root), "")
		if root.Version != "2.0" || root.APIVersion != "2.0" || root.BBBVersion != "2.7.9" {
			t.Errorf("%s: %+v", path, root)
		}
	}
	wantFailed(t, e.xmlCall(http.MethodPost, e.ts.URL+"/bigbluebutton/api", nil, nil), bbb.KeyUnsupportedRequest)
	if resp, _ := e.do(http.MethodGet, e.ts.URL+"/elsewhere", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /elsewhere: HTTP %d", resp.StatusCode)
	}
}

func TestChecksum(t *testing.T) {
	const query = "name=Test+Meeting&meetingID=abc123&attendeePW=111222&moderatorPW=333444"
	tests := []struct {
		name    string
		cfg     func(*Config)
		rawURL  func(base string) string
		wantKey string // "" for SUCCESS
	}{
		{name: "documented sha1 example", rawURL: func(base string) string {
			return base + "create?" + query + "&checksum=1fcbb0c4fc1f039f73aa6d697d2db9ba7f803f17"
		}},
		{name: "sha256", rawURL: signWith(bbb.SHA256, query, testSecret)},
		{name: "sha384", rawURL: signWith(bbb.SHA384, query, testSecret)},
		{name: "sha512", rawURL: signWith(bbb.SHA512, query, testSecret)},
		{name: "upper-case hex", rawURL: func(base string) string {
			return base + "create?" + query + "&checksum=" + strings.ToUpper(bbb.Checksum(bbb.SHA256, "create", query, testSecret))
		}},
		{name: "checksum first, cut out as text", rawURL: func(base string) string {
			return base + "create?checksum=" + bbb.Checksum(bbb.SHA1, "create", query, testSecret) + "&" + query
		}},
		{name: "raw query signed as sent, %20 not re-encoded", rawURL: func(base string) string {
			q := "meetingID=abc123&name=Test%20Meeting"
			return base + "create?" + q + "&checksum=" + bbb.Checksum(bbb.SHA1, "create", q, testSecret)
		}},
		{name: "signed over a re-encoding of what was sent", wantKey: bbb.KeyChecksumError, rawURL: func(base string) string {
			return base + "create?meetingID=abc123&name=Test%20Meeting&checksum=" + bbb.Checksum(bbb.SHA1, "create", "meetingID=abc123&name=Test+Meeting", testSecret)
		}},
		{name: "extra secret", cfg: func(c *Config) { c.Secrets = []string{"rotated-secret"} }, rawURL: signWith(bbb.SHA256, query, "rotated-secret")},
		{name: "wrong secret", wantKey: bbb.KeyChecksumError, rawURL: signWith(bbb.SHA256, query, "other-secret")},
		{name: "signed for another call", wantKey: bbb.KeyChecksumError, rawURL: func(base string) string {
			return base + "create?" + query + "&checksum=" + bbb.Checksum(bbb.SHA1, "join", query, testSecret)
		}},
		{name: "missing", wantKey: bbb.KeyChecksumError, rawURL: func(base string) string { return base + "create?" + query }},
		{name: "empty", wantKey: bbb.KeyChecksumError, rawURL: func(base string) string { return base + "create?" + query + "&checksum=" }},
		{name: "twice", wantKey: bbb.KeyChecksumError, rawURL: func(base string) string {
			sum := bbb.Checksum(bbb.SHA1, "create", query, testSecret)
			return base + "create?" + query + "&checksum=" + sum + "&checksum=" + sum
		}},
		{name: "length of no algorithm", wantKey: bbb.KeyChecksumError, rawURL: func(base string) string {
			return base + "create?" + query + "&checksum=abcdef"
		}},
		{name: "not hex", wantKey: bbb.KeyChecksumError, rawURL: func(base string) string {
			return base + "create?" + query + "&checksum=" + strings.Repeat("z", 40)
		}},
		{name: "algorithm not allowed", wantKey: bbb.KeyChecksumError,
			cfg:    func(c *Config) { c.AllowedAlgorithms = []bbb.Algorithm{bbb.SHA256} },
			rawURL: signWith(bbb.SHA1, query, testSecret)},
		{name: "allowed algorithm", cfg: func(c *Config) { c.AllowedAlgorithms = []bbb.Algorithm{bbb.SHA256} }, rawURL: signWith(bbb.SHA256, query, testSecret)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []func(*Config)
			if tt.cfg != nil {
				opts = append(opts, tt.cfg)
			}
			e := newEnv(t, opts...)
			env := e.xmlCall(http.MethodGet, tt.rawURL(e.ts.URL+"/bigbluebutton/api/"), nil, nil)
			if tt.wantKey == "" {
				wantSuccess(t, env, "")
			} else {
				wantFailed(t, env, tt.wantKey)
			}
		})
	}
}

func signWith(alg bbb.Algorithm, query, secret string) func(string) string {
	return func(base string) string { return base + "create?" + bbb.SignQuery(alg, "create", query, secret) }
}

func TestUnsupportedCallsAndMethods(t *testing.T) {
	e := newEnv(t)
	e.create(vals("meetingID", "m1"))
	tests := []struct {
		method, call string
		wantInMsg    string
	}{
		{http.MethodGet, "getSessions", "getSessions"},
		{http.MethodGet, "putRecordingTextTrack", "putRecordingTextTrack"},
		{http.MethodGet, "Create", "Create"},
		{http.MethodPost, bbb.CallJoin, "POST"},
		{http.MethodPost, bbb.CallPublishRecordings, "POST"},
		{http.MethodPost, bbb.CallDeleteRecordings, "POST"},
		{http.MethodGet, bbb.CallInsertDocument, "GET"},
		{http.MethodPut, bbb.CallCreate, "PUT"},
		{http.MethodDelete, bbb.CallGetMeetings, "DELETE"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.call, func(t *testing.T) {
			env := e.xmlCall(tt.method, e.signed(tt.call, vals("meetingID", "m1", "fullName", "x", "role", "viewer")), nil, nil)
			wantFailed(t, env, bbb.KeyUnsupportedRequest)
			if !strings.Contains(env.Message, tt.wantInMsg) {
				t.Errorf("message %q does not name %q", env.Message, tt.wantInMsg)
			}
		})
	}
	// Nothing above joined the meeting.
	if got := e.info("m1").ParticipantCount; got != 0 {
		t.Errorf("participantCount %d after refused joins", got)
	}
}

func TestCreate(t *testing.T) {
	e := newEnv(t)
	cr := e.create(vals("meetingID", "room-1", "name", "Room One", "record", "TRUE", "duration", "60",
		"maxParticipants", "25", "meta_Origin", "Greenlight", "meta_bbb-origin-version", "v3"))
	now := e.clock.Now()
	if cr.MeetingID != "room-1" || cr.CreateTime != now.UnixMilli() ||
		cr.InternalMeetingID != bbb.InternalMeetingID("room-1", now.UnixMilli()) ||
		cr.CreateDate != bbb.CreateDate(now) || cr.ParentMeetingID != "bbb-none" ||
		cr.Duration != 60 || cr.HasUserJoined || cr.HasBeenForciblyEnded || cr.DialNumber == "" {
		t.Errorf("create answered %+v", cr)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9]{8}$`).MatchString(cr.AttendeePW) || !regexp.MustCompile(`^[A-Za-z0-9]{8}$`).MatchString(cr.ModeratorPW) || cr.AttendeePW == cr.ModeratorPW {
		t.Errorf("generated passwords %q, %q", cr.AttendeePW, cr.ModeratorPW)
	}
	if !regexp.MustCompile(`^[1-9][0-9]{4}$`).MatchString(cr.VoiceBridge) {
		t.Errorf("generated voiceBridge %q", cr.VoiceBridge)
	}
	mi := e.info("room-1")
	if mi.MeetingName != "Room One" || !mi.Recording || mi.MaxUsers != 25 || mi.Running || mi.IsBreakout {
		t.Errorf("getMeetingInfo %+v", mi.Meeting)
	}
	if v, _ := mi.Metadata.Get("origin"); v != "Greenlight" {
		t.Errorf("metadata %+v", mi.Metadata)
	}
	if v, _ := mi.Metadata.Get("bbb-origin-version"); v != "v3" {
		t.Errorf("metadata %+v", mi.Metadata)
	}

	// The name defaults to the meeting ID; given passwords and voice bridge are kept.
	cr = e.create(vals("meetingID", "room-2", "attendeePW", "ap", "moderatorPW", "mp", "voiceBridge", "71234"))
	if cr.AttendeePW != "ap" || cr.ModeratorPW != "mp" || cr.VoiceBridge != "71234" || e.info("room-2").MeetingName != "room-2" {
		t.Errorf("create answered %+v", cr)
	}

	failures := []struct {
		name    string
		v       url.Values
		wantKey string
	}{
		{"no meetingID", vals("name", "x"), bbb.KeyMissingParamMeetingID},
		{"blank meetingID", vals("meetingID", "  "), bbb.KeyMissingParamMeetingID},
		{"comma in meetingID", vals("meetingID", "a,b"), bbb.KeyValidationError},
		{"one-character meetingID", vals("meetingID", "a"), bbb.KeyValidationError},
		{"meetingID too long", vals("meetingID", strings.Repeat("x", 257)), bbb.KeyValidationError},
		{"duration not a number", vals("meetingID", "room-3", "duration", "long"), bbb.KeyValidationError},
		{"negative maxParticipants", vals("meetingID", "room-3", "maxParticipants", "-1"), bbb.KeyValidationError},
		{"voice bridge in use", vals("meetingID", "room-3", "voiceBridge", "71234"), keyNonUniqueVoiceBridge},
		{"breakout without parent", vals("meetingID", "room-3", "isBreakout", "true"), keyParentMeetingIDMissed},
		{"breakout of an unknown parent", vals("meetingID", "room-3", "isBreakout", "true", "parentMeetingID", "nope"), bbb.KeyNotFound},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			wantFailed(t, e.get(bbb.CallCreate, tt.v, nil), tt.wantKey)
		})
	}
	if n := len(e.meetings()); n != 2 {
		t.Errorf("%d meetings after failed creates, want 2", n)
	}
}

func TestCreateByPOST(t *testing.T) {
	e := newEnv(t)
	body, err := bbb.PresentationBody([]bbb.Document{
		{URL: "https://example.com/a.pdf", Filename: "a.pdf"},
		{Filename: "b.pdf", Content: []byte("%PDF-1.4")},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		id       string
		body     []byte
		wantKey  string
		wantDocs int
	}{
		{"with documents", "post-1", body, "", 2},
		{"empty body", "post-2", []byte{}, "", 0},
		{"malformed body", "post-3", []byte("<modules><module"), bbb.KeyValidationError, 0},
		{"not modules", "post-4", []byte("<html/>"), bbb.KeyValidationError, 0},
		{"body too large", "post-5", bytes.Repeat([]byte(" "), MaxBodyBytes+1), bbb.KeyRequestTooLarge, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := e.xmlCall(http.MethodPost, e.signed(bbb.CallCreate, vals("meetingID", tt.id)), tt.body, nil)
			if tt.wantKey != "" {
				wantFailed(t, env, tt.wantKey)
				return
			}
			wantSuccess(t, env, "")
			if got := meetingState(t, e.sim, tt.id).Documents; got != tt.wantDocs {
				t.Errorf("documents %d, want %d", got, tt.wantDocs)
			}
		})
	}
}

func meetingState(t *testing.T, s *Server, meetingID string) MeetingState {
	t.Helper()
	for _, m := range s.Stats().Meetings {
		if m.MeetingID == meetingID {
			return m
		}
	}
	t.Fatalf("no meeting %q in the state", meetingID)
	return MeetingState{}
}

func TestCreateRepeated(t *testing.T) {
	base := vals("meetingID", "dup", "name", "Dup", "attendeePW", "ap", "moderatorPW", "mp")
	tests := []struct {
		name    string
		v       url.Values
		wantKey string
		success bool
	}{
		{"same parameters", base, bbb.KeyDuplicateWarning, true},
		{"no name, no passwords", vals("meetingID", "dup"), bbb.KeyDuplicateWarning, true},
		{"same passwords, no name", vals("meetingID", "dup", "attendeePW", "ap", "moderatorPW", "mp"), bbb.KeyDuplicateWarning, true},
		{"other name", vals("meetingID", "dup", "name", "Other", "attendeePW", "ap", "moderatorPW", "mp"), bbb.KeyIDNotUnique, false},
		{"other attendeePW", vals("meetingID", "dup", "name", "Dup", "attendeePW", "xx", "moderatorPW", "mp"), bbb.KeyIDNotUnique, false},
		{"other moderatorPW", vals("meetingID", "dup", "name", "Dup", "attendeePW", "ap", "moderatorPW", "xx"), bbb.KeyIDNotUnique, false},
		{"one password only", vals("meetingID", "dup", "attendeePW", "ap"), bbb.KeyIDNotUnique, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			first := e.create(base)
			e.clock.Advance(time.Second)
			var again bbb.CreateResponse
			env := e.get(bbb.CallCreate, tt.v, &again)
			if !tt.success {
				wantFailed(t, env, tt.wantKey)
				return
			}
			wantSuccess(t, env, tt.wantKey)
			if again.InternalMeetingID != first.InternalMeetingID || again.CreateTime != first.CreateTime || again.AttendeePW != "ap" {
				t.Errorf("repeat answered %+v, want the existing meeting %+v", again, first)
			}
			if n := len(e.meetings()); n != 1 {
				t.Errorf("%d meetings", n)
			}
		})
	}
}

func TestCreateAfterEndIsANewIncarnation(t *testing.T) {
	e := newEnv(t)
	first := e.create(vals("meetingID", "again", "attendeePW", "ap", "moderatorPW", "mp"))
	wantSuccess(t, e.get(bbb.CallEnd, vals("meetingID", "again"), nil), bbb.KeySentEndMeetingRequest)
	// The clock has not moved: the new incarnation still gets its own createTime.
	second := e.create(vals("meetingID", "again", "attendeePW", "other", "moderatorPW", "other2"))
	if second.CreateTime <= first.CreateTime || second.InternalMeetingID == first.InternalMeetingID || second.HasBeenForciblyEnded {
		t.Errorf("second incarnation %+v, first %+v", second, first)
	}
	mi := e.info("again")
	if mi.InternalMeetingID != second.InternalMeetingID || mi.HasBeenForciblyEnded || mi.AttendeePW != "other" {
		t.Errorf("getMeetingInfo describes %+v", mi.Meeting)
	}
}

func TestJoin(t *testing.T) {
	e := newEnv(t)
	cr := e.create(vals("meetingID", "jm", "attendeePW", "ap", "moderatorPW", "mp"))
	e.create(vals("meetingID", "ended"))
	wantSuccess(t, e.get(bbb.CallEnd, vals("meetingID", "ended"), nil), bbb.KeySentEndMeetingRequest)
	ct := strconv.FormatInt(cr.CreateTime, 10)

	tests := []struct {
		name     string
		v        url.Values
		wantKey  string // failures only
		wantRole string
	}{
		{name: "role moderator, any case", v: vals("fullName", "Mo", "role", "moderator"), wantRole: bbb.RoleModerator},
		{name: "role VIEWER", v: vals("fullName", "Vi", "role", "VIEWER"), wantRole: bbb.RoleViewer},
		{name: "moderator password", v: vals("fullName", "Mo", "password", "mp"), wantRole: bbb.RoleModerator},
		{name: "attendee password", v: vals("fullName", "Vi", "password", "ap"), wantRole: bbb.RoleViewer},
		{name: "role wins over a wrong password", v: vals("fullName", "Vi", "role", "viewer", "password", "bad"), wantRole: bbb.RoleViewer},
		{name: "matching createTime", v: vals("fullName", "Vi", "role", "viewer", "createTime", ct), wantRole: bbb.RoleViewer},
		{name: "wrong password", v: vals("fullName", "X", "password", "bad"), wantKey: bbb.KeyInvalidPassword},
		{name: "unknown role, no password", v: vals("fullName", "X", "role", "admin"), wantKey: bbb.KeyInvalidPassword},
		{name: "neither role nor password", v: vals("fullName", "X"), wantKey: bbb.KeyInvalidPassword},
		{name: "no fullName", v: vals("role", "viewer"), wantKey: keyMissingParamFullName},
		{name: "blank fullName", v: vals("fullName", "  ", "role", "viewer"), wantKey: keyMissingParamFullName},
		{name: "mismatched createTime", v: vals("fullName", "X", "role", "viewer", "createTime", "12345"), wantKey: keyMismatchCreateTime},
		{name: "createTime not a number", v: vals("fullName", "X", "role", "viewer", "createTime", "now"), wantKey: keyMismatchCreateTime},
		{name: "no meetingID", v: vals("fullName", "X", "role", "viewer", "meetingID", ""), wantKey: bbb.KeyMissingParamMeetingID},
		{name: "unknown meeting", v: vals("fullName", "X", "role", "viewer", "meetingID", "nope"), wantKey: bbb.KeyInvalidMeetingIdentifier},
		{name: "forcibly ended meeting", v: vals("fullName", "X", "role", "viewer", "meetingID", "ended"), wantKey: bbb.KeyMeetingForciblyEnded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.v
			if !v.Has("meetingID") {
				v.Set("meetingID", "jm")
			}
			before := e.info("jm").ParticipantCount
			resp, body := e.do(http.MethodGet, e.signed(bbb.CallJoin, v), nil)
			after := e.info("jm").Meeting
			if tt.wantKey != "" {
				var env bbb.Envelope
				if err := xml.Unmarshal(body, &env); resp.StatusCode != http.StatusOK || err != nil {
					t.Fatalf("HTTP %d, %v: %s", resp.StatusCode, err, body)
				}
				wantFailed(t, env, tt.wantKey)
				if after.ParticipantCount != before {
					t.Errorf("a failed join changed participantCount %d → %d", before, after.ParticipantCount)
				}
				return
			}
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("HTTP %d, want 302: %s", resp.StatusCode, body)
			}
			loc := resp.Header.Get("Location")
			want := "http://" + e.ts.Listener.Addr().String() + "/html5client/join?sessionToken="
			if !regexp.MustCompile("^" + regexp.QuoteMeta(want) + "[a-z0-9]{16}$").MatchString(loc) {
				t.Errorf("Location %q, want %s<token>", loc, want)
			}
			if after.ParticipantCount != before+1 || !after.Running || !after.HasUserJoined || after.StartTime != e.clock.Now().UnixMilli() {
				t.Errorf("after the join: %+v", after)
			}
			a := after.Attendees[len(after.Attendees)-1]
			if a.Role != tt.wantRole || a.FullName != v.Get("fullName") || a.ClientType != "HTML5" || !strings.HasPrefix(a.UserID, "w_") {
				t.Errorf("attendee %+v, want role %s", a, tt.wantRole)
			}
		})
	}
	mi := e.info("jm")
	if mi.ModeratorCount != 2 || mi.ParticipantCount != 6 {
		t.Errorf("moderatorCount %d, participantCount %d, want 2 and 6", mi.ModeratorCount, mi.ParticipantCount)
	}
	presenters := 0
	for _, a := range mi.Attendees {
		if a.IsPresenter {
			presenters++
			if a.Role != bbb.RoleModerator {
				t.Errorf("presenter %+v is no moderator", a)
			}
		}
	}
	if presenters != 1 {
		t.Errorf("%d presenters", presenters)
	}
}

func TestJoinWithoutRedirect(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ClientURL = "https://bbb.example.com/html5client/join?lang=de" })
	cr := e.create(vals("meetingID", "xml"))
	env, jr := e.join(vals("meetingID", "xml", "fullName", "Ada", "role", "viewer", "userID", "ext-42"))
	wantSuccess(t, env, bbb.KeySuccessfullyJoined)
	if jr.MeetingID != cr.InternalMeetingID || !strings.HasPrefix(jr.UserID, "w_") || len(jr.AuthToken) != 12 ||
		len(jr.SessionToken) != 16 || jr.GuestStatus != "ALLOW" ||
		jr.URL != "https://bbb.example.com/html5client/join?lang=de&sessionToken="+jr.SessionToken {
		t.Errorf("join answered %+v", jr)
	}
	mi := e.info("xml")
	if mi.ParticipantCount != 1 || mi.Attendees[0].UserID != "ext-42" || mi.Attendees[0].FullName != "Ada" {
		t.Errorf("attendees %+v", mi.Attendees)
	}
	// A rejoin with the same userID replaces the user.
	env, _ = e.join(vals("meetingID", "xml", "fullName", "Ada L.", "role", "viewer", "userID", "ext-42"))
	wantSuccess(t, env, bbb.KeySuccessfullyJoined)
	if mi := e.info("xml"); mi.ParticipantCount != 1 || mi.Attendees[0].FullName != "Ada L." {
		t.Errorf("after a rejoin: %+v", mi.Attendees)
	}
	// redirect=true and a custom client URL redirect there.
	resp, _ := e.do(http.MethodGet, e.signed(bbb.CallJoin, vals("meetingID", "xml", "fullName", "Bo", "role", "viewer", "redirect", "true")), nil)
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "https://bbb.example.com/html5client/join?lang=de&sessionToken=") {
		t.Errorf("HTTP %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestMaxParticipants(t *testing.T) {
	e := newEnv(t)
	e.create(vals("meetingID", "small", "maxParticipants", "2"))
	join := func(name, userID string) bbb.Envelope {
		env, _ := e.join(vals("meetingID", "small", "fullName", name, "role", "viewer", "userID", userID))
		return env
	}
	wantSuccess(t, join("a", "u1"), bbb.KeySuccessfullyJoined)
	wantSuccess(t, join("b", "u2"), bbb.KeySuccessfullyJoined)
	wantFailed(t, join("c", "u3"), bbb.KeyMaxParticipantsReached)
	wantSuccess(t, join("b again", "u2"), bbb.KeySuccessfullyJoined)
	if mi := e.info("small"); mi.ParticipantCount != 2 || mi.MaxUsers != 2 {
		t.Errorf("participantCount %d, maxUsers %d", mi.ParticipantCount, mi.MaxUsers)
	}
}

func TestEnd(t *testing.T) {
	e := newEnv(t)
	e.create(vals("meetingID", "e1", "moderatorPW", "mp", "attendeePW", "ap"))
	e.create(vals("meetingID", "e2"))
	if _, err := e.sim.AddAttendees("e1", AttendeeSpec{Count: 3}); err != nil {
		t.Fatal(err)
	}
	rooms, err := e.sim.AddBreakouts("e1", BreakoutSpec{Rooms: 2, AttendeesPerRoom: 1})
	if err != nil {
		t.Fatal(err)
	}

	wantFailed(t, e.get(bbb.CallEnd, vals("meetingID", "unknown"), nil), bbb.KeyNotFound)
	wantFailed(t, e.get(bbb.CallEnd, vals(), nil), bbb.KeyMissingParamMeetingID)
	e.clock.Advance(time.Minute)
	// No password needed (BBB 2.6+); POST works as GET.
	wantSuccess(t, e.xmlCall(http.MethodPost, e.signed(bbb.CallEnd, vals("meetingID", "e1")), nil, nil), bbb.KeySentEndMeetingRequest)

	ms := e.meetings()
	if len(ms) != 1 || ms[0].MeetingID != "e2" {
		t.Fatalf("getMeetings after end lists %d meetings", len(ms))
	}
	mi := e.info("e1")
	if mi.Running || !mi.HasBeenForciblyEnded || mi.EndTime != e.clock.Now().UnixMilli() || mi.ParticipantCount != 0 || len(mi.BreakoutRooms) != 0 {
		t.Errorf("ended meeting: %+v", mi.Meeting)
	}
	var running bbb.IsMeetingRunningResponse
	wantSuccess(t, e.get(bbb.CallIsMeetingRunning, vals("meetingID", "e1"), &running), "")
	if running.Running {
		t.Error("isMeetingRunning says the ended meeting runs")
	}
	for _, room := range rooms {
		if st := meetingState(t, e.sim, room); !st.Ended || !st.HasBeenForciblyEnded {
			t.Errorf("breakout room %+v did not end with its parent", st)
		}
	}
	// Ending again is answered as bbb-web does while the meeting is in memory.
	wantSuccess(t, e.get(bbb.CallEnd, vals("meetingID", "e1"), nil), bbb.KeySentEndMeetingRequest)
}

func TestMeetingQueries(t *testing.T) {
	e := newEnv(t)
	var gm bbb.GetMeetingsResponse
	resp, body := e.do(http.MethodGet, e.signed(bbb.CallGetMeetings, nil), nil)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("<meetings></meetings>")) {
		t.Errorf("getMeetings without meetings: %s", body)
	}
	wantSuccess(t, e.get(bbb.CallGetMeetings, nil, &gm), bbb.KeyNoMeetings)

	wantFailed(t, e.get(bbb.CallGetMeetingInfo, vals("meetingID", "nope"), nil), bbb.KeyNotFound)
	wantFailed(t, e.get(bbb.CallGetMeetingInfo, nil, nil), bbb.KeyMissingParamMeetingID)
	wantFailed(t, e.get(bbb.CallIsMeetingRunning, nil, nil), bbb.KeyMissingParamMeetingID)
	var running bbb.IsMeetingRunningResponse
	wantSuccess(t, e.get(bbb.CallIsMeetingRunning, vals("meetingID", "nope"), &running), "")
	if running.Running {
		t.Error("an unknown meeting runs")
	}

	e.create(vals("meetingID", "q1", "maxParticipants", "50"))
	e.clock.Advance(time.Second)
	e.create(vals("meetingID", "q2"))
	wantSuccess(t, e.get(bbb.CallIsMeetingRunning, vals("meetingID", "q1"), &running), "")
	if running.Running {
		t.Error("a meeting nobody joined runs")
	}
	for _, spec := range []AttendeeSpec{
		{Count: 2, Role: "moderator", Voice: true, Video: true},
		{Count: 3, Voice: true},
		{Count: 4, ListenOnly: true},
		{Count: 1, Video: true},
		{Count: 5},
	} {
		if _, err := e.sim.AddAttendees("q1", spec); err != nil {
			t.Fatal(err)
		}
	}
	wantSuccess(t, e.get(bbb.CallIsMeetingRunning, vals("meetingID", "q1"), &running), "")
	if !running.Running {
		t.Error("a joined meeting does not run")
	}
	ms := e.meetings()
	if len(ms) != 2 || ms[0].MeetingID != "q1" || ms[1].MeetingID != "q2" {
		t.Fatalf("getMeetings: %+v", ms)
	}
	q1 := ms[0]
	got := [6]int{q1.ParticipantCount, q1.ModeratorCount, q1.VoiceParticipantCount, q1.ListenerCount, q1.VideoCount, q1.MaxUsers}
	if want := [6]int{15, 2, 9, 4, 3, 50}; got != want {
		t.Errorf("participant, moderator, voice, listener, video, maxUsers counts %v, want %v", got, want)
	}
	if len(q1.Attendees) != 15 || !q1.Running || !q1.HasUserJoined {
		t.Errorf("q1 %+v", q1)
	}
	if mi := e.info("q1"); mi.ParticipantCount != 15 || mi.VideoCount != 3 {
		t.Errorf("getMeetingInfo disagrees with getMeetings: %+v", mi.Meeting)
	}
}

func TestInsertDocument(t *testing.T) {
	e := newEnv(t)
	e.create(vals("meetingID", "docs"))
	body, err := bbb.PresentationBody([]bbb.Document{{URL: "https://example.com/a.pdf", Filename: "a.pdf"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		id      string
		body    []byte
		wantKey string
		success bool
	}{
		{"inserted", "docs", body, bbb.KeyDocumentInserted, true},
		{"unknown meeting", "nope", body, bbb.KeyNotFound, false},
		{"no body", "docs", nil, bbb.KeyValidationError, false},
		{"malformed body", "docs", []byte("<modules>"), bbb.KeyValidationError, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := e.xmlCall(http.MethodPost, e.signed(bbb.CallInsertDocument, vals("meetingID", tt.id)), tt.body, nil)
			if tt.success {
				wantSuccess(t, env, tt.wantKey)
			} else {
				wantFailed(t, env, tt.wantKey)
			}
		})
	}
	if got := meetingState(t, e.sim, "docs").Documents; got != 1 {
		t.Errorf("documents %d, want 1", got)
	}
}

func TestBreakoutsByCreate(t *testing.T) {
	e := newEnv(t)
	parent := e.create(vals("meetingID", "parent"))
	room := e.create(vals("meetingID", "parent-room-1", "isBreakout", "true", "parentMeetingID", parent.InternalMeetingID, "freeJoin", "true"))
	if room.ParentMeetingID != parent.InternalMeetingID {
		t.Errorf("create answered parentMeetingID %q", room.ParentMeetingID)
	}
	mi := e.info("parent-room-1")
	if !mi.IsBreakout || mi.ParentMeetingID != parent.InternalMeetingID || mi.Sequence != 1 || mi.FreeJoin == nil || !*mi.FreeJoin {
		t.Errorf("breakout room %+v", mi.Meeting)
	}
	if p := e.info("parent"); len(p.BreakoutRooms) != 1 || p.BreakoutRooms[0] != room.InternalMeetingID {
		t.Errorf("parent's breakoutRooms %v", p.BreakoutRooms)
	}
}

func TestDeterministicWithSeed(t *testing.T) {
	a, b := newEnv(t), newEnv(t)
	ca, cb := a.create(vals("meetingID", "seeded")), b.create(vals("meetingID", "seeded"))
	if ca != cb {
		t.Errorf("same seed, different meetings:\n%+v\n%+v", ca, cb)
	}
	c := newEnv(t, func(c *Config) { c.Seed = 2 })
	if cc := c.create(vals("meetingID", "seeded")); cc.AttendeePW == ca.AttendeePW {
		t.Error("another seed drew the same password")
	}
}
