package sim

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/bbb-agent/bbb-agent/bbb"
)

// benchRequest is a signed API request served in process, without a network.
func benchRequest(b *testing.B, s *Server, call string, kv ...string) {
	req := httptest.NewRequest(http.MethodGet, "/bigbluebutton/api/"+call+"?"+bbb.SignQuery(bbb.SHA256, call, bbb.EncodeQuery(vals(kv...)), testSecret), nil)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	if w.Code != http.StatusOK && w.Code != http.StatusFound {
		b.Fatalf("%s: HTTP %d", call, w.Code)
	}
}

func benchServer(b *testing.B, meetings int) *Server {
	s := New(Config{Secret: testSecret, Seed: 1})
	for i := range meetings {
		id := "bench-" + strconv.Itoa(i)
		benchRequest(b, s, bbb.CallCreate, "meetingID", id)
		if _, err := s.AddAttendees(id, AttendeeSpec{Count: 10, Voice: true}); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

func BenchmarkCreate(b *testing.B) {
	s := benchServer(b, 0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		benchRequest(b, s, bbb.CallCreate, "meetingID", "bench-"+strconv.Itoa(i), "name", "Bench", "record", "true")
	}
}

func BenchmarkJoin(b *testing.B) {
	s := benchServer(b, 1)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		benchRequest(b, s, bbb.CallJoin, "meetingID", "bench-0", "fullName", "User", "role", "viewer", "userID", strconv.Itoa(i%50))
	}
}

func BenchmarkGetMeetings(b *testing.B) {
	s := benchServer(b, 20)
	b.ReportAllocs()
	for b.Loop() {
		benchRequest(b, s, bbb.CallGetMeetings)
	}
}

// BenchmarkCreateHolding measures a create (and the end that keeps the count
// steady) while the simulator holds a number of meetings: the cost must not
// grow with that number.
func BenchmarkCreateHolding(b *testing.B) {
	for _, holding := range []int{0, 30000} {
		b.Run("meetings="+strconv.Itoa(holding), func(b *testing.B) {
			s := New(Config{Secret: testSecret, Seed: 1})
			for i := range holding {
				benchRequest(b, s, bbb.CallCreate, "meetingID", "held-"+strconv.Itoa(i))
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				id := "bench-" + strconv.Itoa(i)
				benchRequest(b, s, bbb.CallCreate, "meetingID", id)
				benchRequest(b, s, bbb.CallEnd, "meetingID", id)
			}
		})
	}
}
