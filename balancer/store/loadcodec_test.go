package store

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/fleet"
)

func randomLoad(rng *rand.Rand) fleet.Load {
	texts := []string{"", "3.0.4", `quote " and \ backslash`, "tab\tnewline\n", "ünïcødé ✓", "<html> & co", "\x00\x1f"}
	return fleet.Load{
		CPUPercent: rng.Float64() * 100, CPUCores: rng.IntN(256), Load1: rng.Float64() * 10, Load5: rng.ExpFloat64(),
		Load15: float64(rng.IntN(5)), MemTotalBytes: rng.Uint64(), MemUsedBytes: rng.Uint64() >> rng.IntN(64),
		NetRxBytesPerSec: rng.Float64() * 1e12, NetTxBytesPerSec: rng.Float64() * 1e-12, DiskFreeBytes: rng.Uint64(),
		Meetings: rng.IntN(1000), Participants: rng.IntN(100000), Voice: rng.IntN(1000), Video: rng.IntN(1000),
		Listeners: rng.IntN(1000), LargestMeeting: rng.IntN(1000), RecordingBacklog: rng.IntN(1000),
		BBBHealthy: rng.IntN(2) == 0, BBBError: texts[rng.IntN(len(texts))], TURNHealthy: rng.IntN(2) == 0,
		BBBVersion: texts[rng.IntN(len(texts))],
	}
}

func TestLoadCodec(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 2000 {
		want := randomLoad(rng)
		stored := appendLoad(nil, want)
		if !json.Valid(stored) {
			t.Fatalf("stored load is not JSON: %s", stored)
		}
		got, err := decodeLoad(stored)
		if err != nil {
			t.Fatalf("decode %s: %v", stored, err)
		}
		if got != want {
			t.Fatalf("round trip of %s:\n got %+v\nwant %+v", stored, got, want)
		}
		// As PostgreSQL's jsonb prints it back: a space after each comma.
		spaced := strings.ReplaceAll(string(stored), ",", ", ")
		if want.BBBError == "" && want.BBBVersion == "" || !strings.Contains(want.BBBError+want.BBBVersion, ",") {
			if got, err := decodeLoad([]byte(spaced)); err != nil || got != want {
				t.Fatalf("decode %s: %+v, %v", spaced, got, err)
			}
		}
		// Rows written before the array: the JSON object.
		obj, _ := json.Marshal(want)
		if got, err := decodeLoad(obj); err != nil || got != want {
			t.Fatalf("decode object %s: %+v, %v", obj, got, err)
		}
	}
}

func TestLoadCodecSmaller(t *testing.T) {
	l := fleet.Load{CPUPercent: 22.352941176470587, CPUCores: 16, Load1: 2.176470588235294, Load5: 2.5588235294117645, Load15: 2.4,
		MemTotalBytes: 68719476736, MemUsedBytes: 21537997763, NetRxBytesPerSec: 4058823.529411765, NetTxBytesPerSec: 9117647.05882353,
		DiskFreeBytes: 85899345920, Meetings: 10, Participants: 150, Voice: 50, Video: 30, Listeners: 100, LargestMeeting: 30,
		BBBHealthy: true, BBBVersion: "3.0.4"}
	obj, _ := json.Marshal(l)
	arr := appendLoad(nil, l)
	t.Logf("object %d bytes, array %d bytes: %s", len(obj), len(arr), arr)
	if 2*len(arr) > len(obj) {
		t.Errorf("the stored array (%d bytes) is not under half the object (%d bytes)", len(arr), len(obj))
	}
}

func TestLoadCodecEdges(t *testing.T) {
	// What JSON cannot carry is stored as 0, not refused: one node's odd
	// figure must not fail the flush of 2,000 reports.
	got, err := decodeLoad(appendLoad(nil, fleet.Load{CPUPercent: math.NaN(), Load1: math.Inf(1), Meetings: 3}))
	if err != nil || got != (fleet.Load{Meetings: 3}) {
		t.Errorf("NaN and Inf: %+v, %v", got, err)
	}
	// A shorter array (an older format of the same version) leaves the rest zero.
	got, err = decodeLoad([]byte(`[1,12.5,8]`))
	if err != nil || got != (fleet.Load{CPUPercent: 12.5, CPUCores: 8}) {
		t.Errorf("short array: %+v, %v", got, err)
	}
	for _, c := range []struct{ raw, want string }{
		{`{}`, ""},
		{``, "not a JSON array or object"},
		{`[2,1]`, "format 2, this balancer reads 1: a newer balancer wrote it"},
		{`[1,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,true,"",false,"v",99]`, "more values than this balancer knows"},
		{`[1,x]`, "value 1"},
		{`[1,1,2,3,4,5,-6]`, "value 6"},
		{`[1,1 2]`, "want , before value 2"},
		{`[1,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,yes]`, `"yes" is not true or false`},
		{`[1,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,true,5]`, "want a string"},
		{`[1,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,true,"open`, "unterminated string"},
		{`[1] x`, "text after the array"},
	} {
		_, err := decodeLoad([]byte(c.raw))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("decode %q: %v", c.raw, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("decode %q: error %v, want one saying %q", c.raw, err, c.want)
		}
	}
}

// TestStoredLoad: a report's and a poll's load come back from each dialect
// whole, strings with escapes included, and a row written before the
// array format (the JSON object) is still read.
func TestStoredLoad(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, b backend) {
		ctx := t.Context()
		rng := rand.New(rand.NewPCG(9, 10))
		a, c := addNode(t, s, "a"), addNode(t, s, "c")
		for i := range 20 {
			reported, polled := randomLoad(rng), randomLoad(rng)
			at := t0.Add(time.Duration(i+1) * time.Second)
			if _, err := s.RecordReports(ctx, []records.Report{{NodeID: a.ID, Seq: int64(i), ReceivedAt: at, Load: reported}}); err != nil {
				t.Fatal(err)
			}
			if err := s.RecordPoll(ctx, c.ID, at, polled); err != nil {
				t.Fatal(err)
			}
			nodes, err := s.Nodes(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range nodes {
				want := map[string]fleet.Load{a.ID: reported, c.ID: polled}[n.ID]
				if n.Load != want {
					t.Fatalf("node %s's load:\n got %+v\nwant %+v", n.Name, n.Load, want)
				}
			}
		}
		old := fleet.Load{CPUPercent: 12.5, Meetings: 4, BBBHealthy: true, BBBVersion: "2.7.3"}
		obj, _ := json.Marshal(old)
		if _, err := s.exec(ctx, s.db, `UPDATE `+s.reportRows()+` SET load_json = ? WHERE id = ?`, string(obj), a.ID); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Node(ctx, a.ID); err != nil || got.Load != old {
			t.Errorf("a row in the object format: %+v, %v; want %+v", got.Load, err, old)
		}
		// A row no balancer could have written fails its read with words
		// that say so, not with a zero load.
		if _, err := s.exec(ctx, s.db, `UPDATE `+s.reportRows()+` SET load_json = ? WHERE id = ?`, `[7,1]`, a.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Node(ctx, a.ID); err == nil || !strings.Contains(err.Error(), "a newer balancer wrote it") {
			t.Errorf("a row of format 7: %v", err)
		}
	})
}

func BenchmarkLoadCodec(b *testing.B) {
	l := randomLoad(rand.New(rand.NewPCG(1, 1)))
	l.BBBError, l.BBBVersion = "", "3.0.4"
	var buf []byte
	b.Run("append", func(b *testing.B) {
		for b.Loop() {
			buf = appendLoad(buf[:0], l)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		for b.Loop() {
			buf, _ = json.Marshal(l)
		}
	})
	stored, obj := appendLoad(nil, l), buf
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			_, _ = decodeLoad(stored)
		}
	})
	b.Run("json.Unmarshal", func(b *testing.B) {
		for b.Loop() {
			var got fleet.Load
			_ = json.Unmarshal(obj, &got)
		}
	})
}
