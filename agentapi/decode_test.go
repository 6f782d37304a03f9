package agentapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/bbb-agent/bbb-agent/fleet"
)

// sameAsUnmarshal checks that DecodeReport answers data exactly as
// json.Unmarshal does: the same report, or the same error.
func sameAsUnmarshal(t *testing.T, data []byte) {
	t.Helper()
	var got, want ReportRequest
	gotErr, wantErr := DecodeReport(data, &got), json.Unmarshal(data, &want)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("%q: error %v, json.Unmarshal's %v", data, gotErr, wantErr)
	}
	if wantErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n got %#v\nwant %#v", data, got, want)
	}
	var borrowed ReportRequest
	if err := DecodeReportBorrowing(slices.Clone(data), &borrowed); fmt.Sprint(err) != fmt.Sprint(wantErr) || wantErr == nil && !reflect.DeepEqual(borrowed, want) {
		t.Fatalf("%q: borrowing: %#v, %v", data, borrowed, err)
	}
}

// TestDecodeReportBorrowing: borrowed meeting IDs change with the body;
// CloneStrings' copies do not.
func TestDecodeReportBorrowing(t *testing.T) {
	body := []byte(`{"node":"bbb-1","seq":1,"meeting_ids":["room-a","room-b"]}`)
	var r ReportRequest
	if err := DecodeReportBorrowing(body, &r); err != nil {
		t.Fatal(err)
	}
	kept := CloneStrings(r.MeetingIDs)
	copy(body[bytes.Index(body, []byte("room-a")):], "ROOM-X")
	if want := []string{"ROOM-X", "room-b"}; !slices.Equal(r.MeetingIDs, want) {
		t.Errorf("borrowed IDs %q after the body changed; want %q (they share its memory)", r.MeetingIDs, want)
	}
	if want := []string{"room-a", "room-b"}; !slices.Equal(kept, want) {
		t.Errorf("cloned IDs %q after the body changed; want %q", kept, want)
	}
	if CloneStrings(nil) != nil || CloneStrings([]string{}) == nil {
		t.Error("CloneStrings: nil (not sent) and [] (none running) must stay apart")
	}
}

// fullReport sets every field of a report, the load's too, to a value
// that is not its zero.
func fullReport() ReportRequest {
	r := ReportRequest{Node: "bbb-1", Seq: 42, Run: "run-1", MeetingIDs: []string{"a", "b-2"}, Leaving: true}
	v := reflect.ValueOf(&r.Load).Elem()
	for i := range v.NumField() {
		switch f := v.Field(i); f.Kind() {
		case reflect.Float64:
			f.SetFloat(1.5 + float64(i))
		case reflect.Int:
			f.SetInt(int64(3 + i))
		case reflect.Uint64:
			f.SetUint(uint64(1<<40 + i))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.String:
			f.SetString(fmt.Sprintf("text %d", i))
		default:
			panic(fmt.Sprintf("fleet.Load.%s: a %s; teach the report scanner and this test", v.Type().Field(i).Name, f.Kind()))
		}
	}
	return r
}

// TestDecodeReportFastPath: a body as bbb-agent sends it, with every field
// of the report and its load, takes the fast path (a field added to
// fleet.Load without teaching the scanner would fail here) and decodes as
// json.Unmarshal does.
func TestDecodeReportFastPath(t *testing.T) {
	want := fullReport()
	body, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var got ReportRequest
	if d := (reportScanner{b: body}); !d.report(&got) {
		t.Fatalf("the fast path refused a body as bbb-agent sends it: %s", body)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fast path:\n got %#v\nwant %#v", got, want)
	}
	sameAsUnmarshal(t, body)
	indented, _ := json.MarshalIndent(want, "", "\t")
	sameAsUnmarshal(t, indented)
}

// TestDecodeReportLikeUnmarshal: bodies off the fast path, and broken ones,
// get json.Unmarshal's answer.
func TestDecodeReportLikeUnmarshal(t *testing.T) {
	for _, body := range []string{
		`{"node":"a","seq":1,"load":{"meetings":2},"meeting_ids":[]}`, // [] is not nil
		`{"node":"a","meeting_ids":null}`,
		`{"node":"a"}`,
		`{}`,
		` { "node" : "a" , "seq" : -7 } `,
		`{"Node":"case-insensitive"}`,
		`{"node":"esc\"aped","run":"\u00e9"}`,
		`{"node":"é"}`,
		`{"node":"a","unknown":{"x":[1,2,{"y":null}]}}`,
		`{"node":"a","load":{"unknown":1}}`,
		`{"node":"a","load":{"meetings":1},"load":{"voice":2}}`, // merged
		`{"node":"a","meeting_ids":["x"],"meeting_ids":["y","z"]}`,
		`{"seq":1.5}`,
		`{"seq":1e3}`,
		`{"seq":9223372036854775808}`,
		`{"seq":-0}`,
		`{"seq":01}`,
		`{"load":{"mem_total_bytes":-1}}`,
		`{"load":{"mem_total_bytes":-0}}`,
		`{"load":{"cpu_percent":1e999}}`,
		`{"load":{"cpu_percent":-0.0e-0}}`,
		`{"load":{"cpu_percent":"42"}}`,
		`{"load":{"bbb_healthy":tru}}`,
		`{"load":{"bbb_healthy":null}}`,
		`{"node":"a"} trailing`,
		`{"node":"a"}{}`,
		`{"node":"a",}`,
		`{"node":"a"`,
		`{"node":}`,
		`[]`,
		`null`,
		``,
		"{\"node\":\"tab\there\"}",
		`{"node":"a","leaving":false,"leaving":true}`,
		`{"meeting_ids":["","a",""," b "]}`,
		`{"meeting_ids":["a","b",]}`,
		`{"meeting_ids":["a" "b"]}`,
		`{"meeting_ids":["a",1]}`,
	} {
		t.Run(body, func(t *testing.T) { sameAsUnmarshal(t, []byte(body)) })
	}
	// More meeting IDs than the scanner's stack holds spans for, of
	// lengths 0 to 99.
	var ids []string
	for i := range 100 {
		ids = append(ids, strings.Repeat("m", i))
	}
	body, _ := json.Marshal(ReportRequest{Node: "big", MeetingIDs: ids})
	sameAsUnmarshal(t, body)
	var got ReportRequest
	if d := (reportScanner{b: body}); !d.report(&got) || !reflect.DeepEqual(got.MeetingIDs, ids) {
		t.Errorf("100 meeting IDs: the fast path gave %d of them (or refused)", len(got.MeetingIDs))
	}
}

// FuzzDecodeReport: whatever the body, DecodeReport answers as
// json.Unmarshal does.
func FuzzDecodeReport(f *testing.F) {
	full, _ := json.Marshal(fullReport())
	f.Add(full)
	f.Add([]byte(`{"node":"a","seq":1,"load":{"meetings":2,"cpu_percent":12.5e-1},"meeting_ids":[]}`))
	f.Add([]byte(`{"node":"a","meeting_ids":["x","y"],"leaving":true}`))
	f.Add([]byte(strings.Replace(string(full), `"seq":42`, `"seq":4.2`, 1)))
	f.Fuzz(func(t *testing.T, body []byte) { sameAsUnmarshal(t, body) })
}

var benchReport, _ = json.Marshal(ReportRequest{Node: "fleet01234", Seq: 1234, Run: "run-fleet01234",
	Load: fleet.Load{CPUPercent: 37.5, CPUCores: 16, Load1: 2.5, Load5: 2.7, Load15: 2.4, MemTotalBytes: 64 << 30,
		MemUsedBytes: 21 << 30, NetRxBytesPerSec: 4.2e6, NetTxBytesPerSec: 9.9e6, DiskFreeBytes: 80 << 30, Meetings: 10,
		Participants: 150, Voice: 50, Video: 30, Listeners: 100, LargestMeeting: 30, BBBHealthy: true, BBBVersion: "3.0.4"},
	MeetingIDs: strings.Fields("meeting-000001 meeting-010001 meeting-020001 meeting-030001 meeting-040001 meeting-050001 meeting-060001 meeting-070001 meeting-080001 meeting-090001")})

// BenchmarkDecodeReport: a report as bbb-agent sends it, by DecodeReport
// and by json.Unmarshal.
func BenchmarkDecodeReport(b *testing.B) {
	b.Run("DecodeReport", func(b *testing.B) {
		for b.Loop() {
			var r ReportRequest
			if err := DecodeReport(benchReport, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json.Unmarshal", func(b *testing.B) {
		for b.Loop() {
			var r ReportRequest
			if err := json.Unmarshal(benchReport, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
