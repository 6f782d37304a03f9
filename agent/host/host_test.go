package host

import (
	"context"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)

// fakeHost is a root directory whose proc/ tests swap between testdata
// snapshots, and the clock its Collector reads.
type fakeHost struct {
	t    testing.TB
	root string
	now  time.Time
}

func newFakeHost(t testing.TB) *fakeHost {
	h := &fakeHost{t: t, root: t.TempDir(), now: t0}
	if err := os.MkdirAll(filepath.Join(h.root, DefaultDiskPath), 0o755); err != nil {
		t.Fatal(err)
	}
	return h
}

// load makes testdata/<snapshot>/proc the host's proc/.
func (h *fakeHost) load(snapshot string) {
	h.t.Helper()
	proc := filepath.Join(h.root, "proc")
	if err := os.RemoveAll(proc); err != nil {
		h.t.Fatal(err)
	}
	if err := os.CopyFS(proc, os.DirFS(filepath.Join("testdata", snapshot, "proc"))); err != nil {
		h.t.Fatal(err)
	}
}

func (h *fakeHost) collector(ifaces ...string) *Collector {
	return NewCollector(Config{Root: h.root, Interfaces: ifaces, Clock: func() time.Time { return h.now }})
}

// checkSample compares everything but DiskFreeBytes, which is the real free
// space of the temporary directory's file system and only has to be there.
func checkSample(t *testing.T, step int, got, want Sample) {
	t.Helper()
	if got.DiskFreeBytes == 0 {
		t.Errorf("sample %d: DiskFreeBytes = 0", step)
	}
	got.DiskFreeBytes = 0
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if !got.Time.Equal(want.Time) || got.Interval != want.Interval ||
		!near(got.CPUPercent, want.CPUPercent) || got.CPUCores != want.CPUCores ||
		got.Load1 != want.Load1 || got.Load5 != want.Load5 || got.Load15 != want.Load15 ||
		got.MemTotalBytes != want.MemTotalBytes || got.MemUsedBytes != want.MemUsedBytes ||
		!near(got.NetRxBytesPerSec, want.NetRxBytesPerSec) || !near(got.NetTxBytesPerSec, want.NetTxBytesPerSec) {
		t.Errorf("sample %d:\n got %+v\nwant %+v", step, got, want)
	}
}

func TestSample(t *testing.T) {
	const kB = 1024
	tests := []struct {
		name      string
		snapshots []string
		step      time.Duration // clock advance between snapshots
		ifaces    []string
		want      []Sample
	}{
		{
			name:      "two cores",
			snapshots: []string{"two-cores/t0", "two-cores/t1"},
			step:      5 * time.Second,
			want: []Sample{{
				// Since boot: busy 10000+500+3000+200+300 of 95000 ticks.
				Time: t0, CPUPercent: 100 * 14000.0 / 95000, CPUCores: 2,
				Load1: 0.52, Load5: 0.58, Load15: 0.59,
				MemTotalBytes: 8000000 * kB, MemUsedBytes: 3000000 * kB,
			}, {
				// 1000 ticks: user 150, system 50, irq 5, softirq 5 busy; idle 780, iowait 10.
				Time: t0.Add(5 * time.Second), Interval: 5 * time.Second,
				CPUPercent: 21, CPUCores: 2,
				Load1: 0.61, Load5: 0.60, Load15: 0.59,
				MemTotalBytes: 8000000 * kB, MemUsedBytes: 3100000 * kB,
				// eth0: +25,000,000 and +12,500,000 bytes in 5 s; lo not counted.
				NetRxBytesPerSec: 5000000, NetTxBytesPerSec: 2500000,
			}},
		},
		{
			name:      "eight cores busy",
			snapshots: []string{"eight-cores-busy/t0", "eight-cores-busy/t1"},
			step:      5 * time.Second,
			ifaces:    []string{"ens5"},
			want: []Sample{{
				// guest 50000 is inside user and not counted twice.
				Time: t0, CPUPercent: 100 * 2401000.0 / 7421000, CPUCores: 8,
				Load1: 7.83, Load5: 7.12, Load15: 6.50,
				MemTotalBytes: 32768000 * kB, MemUsedBytes: 28672000 * kB,
			}, {
				// 4000 ticks: idle 200 + iowait 40; busy 3760.
				Time: t0.Add(5 * time.Second), Interval: 5 * time.Second,
				CPUPercent: 94, CPUCores: 8,
				Load1: 8.01, Load5: 7.20, Load15: 6.55,
				MemTotalBytes: 32768000 * kB, MemUsedBytes: 28768000 * kB,
				// ens5 only: +60,000,000 and +250,000,000 bytes in 5 s.
				NetRxBytesPerSec: 12000000, NetTxBytesPerSec: 50000000,
			}},
		},
		{
			name:      "counter reset",
			snapshots: []string{"counter-reset/t0", "counter-reset/t1"},
			step:      4 * time.Second,
			want: []Sample{{
				Time: t0, CPUPercent: 100 * 14000.0 / 95000, CPUCores: 2,
				Load1: 0.30, Load5: 0.25, Load15: 0.20,
				MemTotalBytes: 8000000 * kB, MemUsedBytes: 3000000 * kB,
			}, {
				// 800 ticks: user 100, system 40 busy.
				Time: t0.Add(4 * time.Second), Interval: 4 * time.Second,
				CPUPercent: 17.5, CPUCores: 2,
				Load1: 0.30, Load5: 0.25, Load15: 0.20,
				MemTotalBytes: 8000000 * kB, MemUsedBytes: 3000000 * kB,
				// eth0 +10,000,000/+5,000,000; eth1 reset to 3,000,000/1,000,000;
				// tun0 new with 500,000/0; eth2 gone. Over 4 s.
				NetRxBytesPerSec: 13500000.0 / 4, NetTxBytesPerSec: 6000000.0 / 4,
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost(t)
			c := h.collector(tt.ifaces...)
			for i, snap := range tt.snapshots {
				h.load(snap)
				got, err := c.Sample(t.Context())
				if err != nil {
					t.Fatalf("sample %d: %v", i, err)
				}
				checkSample(t, i, got, tt.want[i])
				h.now = h.now.Add(tt.step)
			}
		})
	}
}

func TestSampleErrors(t *testing.T) {
	tests := []struct {
		name     string
		snapshot string
		diskPath string
		want     []string // substrings of the error, after the root
		is       error
	}{
		{"missing net/dev", "missing-netdev", "", []string{"reading ", "/proc/net/dev: no such file or directory"}, fs.ErrNotExist},
		{"malformed meminfo", "bad-meminfo", "", []string{"reading ", `/proc/meminfo: strconv.ParseUint: parsing "lots": invalid syntax`}, nil},
		{"missing disk path", "two-cores/t0", "/srv/recordings", []string{"statfs ", "/srv/recordings: no such file or directory"}, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost(t)
			h.load(tt.snapshot)
			c := NewCollector(Config{Root: h.root, DiskPath: tt.diskPath})
			s, err := c.Sample(t.Context())
			if err == nil {
				t.Fatalf("no error; sample %+v", s)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.want[0]+h.root+"/") || !strings.HasSuffix(msg, tt.want[1]) {
				t.Errorf("error %q, want %q + root + %q", msg, tt.want[0], tt.want[1])
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if s != (Sample{}) {
				t.Errorf("sample with error = %+v, want none", s)
			}
		})
	}
}

// A failed sample keeps the baseline: the next one covers the whole time
// since the last success.
func TestSampleErrorKeepsBaseline(t *testing.T) {
	h := newFakeHost(t)
	c := h.collector()
	h.load("two-cores/t0")
	if _, err := c.Sample(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.now = h.now.Add(5 * time.Second)
	h.load("missing-netdev")
	if _, err := c.Sample(t.Context()); err == nil {
		t.Fatal("no error without proc/net/dev")
	}
	h.now = h.now.Add(5 * time.Second)
	h.load("two-cores/t1")
	got, err := c.Sample(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	checkSample(t, 2, got, Sample{
		Time: t0.Add(10 * time.Second), Interval: 10 * time.Second,
		CPUPercent: 21, CPUCores: 2,
		Load1: 0.61, Load5: 0.60, Load15: 0.59,
		MemTotalBytes: 8000000 * 1024, MemUsedBytes: 3100000 * 1024,
		NetRxBytesPerSec: 2500000, NetTxBytesPerSec: 1250000,
	})
}

// Two samples of unchanged counters at the same instant repeat the previous
// rates instead of dividing by zero.
func TestSampleNoProgress(t *testing.T) {
	h := newFakeHost(t)
	c := h.collector()
	h.load("two-cores/t0")
	if _, err := c.Sample(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.now = h.now.Add(5 * time.Second)
	h.load("two-cores/t1")
	want, err := c.Sample(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Sample(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want.Interval = 0
	checkSample(t, 2, got, want)
}

func TestSampleCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := NewCollector(Config{}).Sample(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Sample(canceled) = %v, want context.Canceled", err)
	}
}

// A file gopsutil cannot make sense of fails the sample, naming the file.
// Each case replaces one file of the two-cores/t0 snapshot.
func TestSampleMalformed(t *testing.T) {
	tests := []struct {
		name, file, data string
		want             string // the error's end, after the root
	}{
		{"stat without cpu line", "proc/stat", "intr 1 2\nctxt 3\n", "/proc/stat: stat does not contain cpu info"},
		{"stat empty", "proc/stat", "", "/proc/stat: no cpu line"},
		{"stat short cpu line", "proc/stat", "cpu  1 2 3\n", "/proc/stat: stat does not contain cpu info"},
		{"stat bad number", "proc/stat", "cpu  1 2 x 4 5 6 7\n", `/proc/stat: parse CPU time field 3 for cpu-total: strconv.ParseUint: parsing "x": invalid syntax`},
		{"stat bad per-CPU line", "proc/stat", "cpu  2 2 2 2 2 2 2\ncpu0 1 1 1 1 1 1 1\ncpu1 1 1 1 1 1 x 1\n", `/proc/stat: parse CPU time field 6 for cpu1: strconv.ParseUint: parsing "x": invalid syntax`},
		{"loadavg short", "proc/loadavg", "0.1 0.2\n", "/proc/loadavg: 2 fields, want at least 3"},
		{"loadavg bad number", "proc/loadavg", "0.1 high 0.3 1/2 3\n", `/proc/loadavg: strconv.ParseFloat: parsing "high": invalid syntax`},
		{"meminfo without MemTotal", "proc/meminfo", "MemFree: 1 kB\nMemAvailable: 1 kB\n", "/proc/meminfo: no MemTotal"},
		{"meminfo available above total", "proc/meminfo", "MemTotal: 1 kB\nMemAvailable: 2 kB\n", "/proc/meminfo: MemAvailable 2048 exceeds MemTotal 1024"},
		{"net/dev bad number", "proc/net/dev", "h1\nh2\n  eth0: 1 2 3 4 5 6 7 8 -9 10 11 12 13 14 15 16\n", `/proc/net/dev: strconv.ParseUint: parsing "-9": invalid syntax`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost(t)
			h.load("two-cores/t0")
			if err := os.WriteFile(filepath.Join(h.root, tt.file), []byte(tt.data), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := h.collector().Sample(t.Context())
			if err == nil {
				t.Fatalf("no error; sample %+v", s)
			}
			if msg := err.Error(); msg != "reading "+h.root+tt.want {
				t.Errorf("error %q, want %q", msg, "reading "+h.root+tt.want)
			}
		})
	}
}

// Every file is read below the root, never from the live /proc, also when
// it is missing: gopsutil's load.AvgWithContext would fall back to the live
// kernel's load averages here.
func TestSampleMissingFile(t *testing.T) {
	for _, file := range []string{"proc/stat", "proc/loadavg", "proc/meminfo", "proc/net/dev"} {
		t.Run(file, func(t *testing.T) {
			h := newFakeHost(t)
			h.load("two-cores/t0")
			if err := os.Remove(filepath.Join(h.root, file)); err != nil {
				t.Fatal(err)
			}
			s, err := h.collector().Sample(t.Context())
			if want := "reading " + filepath.Join(h.root, file) + ": no such file or directory"; err == nil || err.Error() != want {
				t.Fatalf("Sample = %+v, %v; want error %q", s, err, want)
			}
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error %v is not %v", err, fs.ErrNotExist)
			}
		})
	}
}

func TestBusyPercent(t *testing.T) {
	tests := []struct {
		name      string
		prev, cur cpuTimes
		want      float64
		ok        bool
	}{
		{"since boot", cpuTimes{}, cpuTimes{busy: 25, idle: 75}, 25, true},
		{"interval", cpuTimes{busy: 25, idle: 75}, cpuTimes{busy: 125, idle: 175}, 50, true},
		{"iowait stepped back", cpuTimes{busy: 100, idle: 100}, cpuTimes{busy: 200, idle: 90}, 100, true},
		{"no tick", cpuTimes{busy: 100, idle: 100}, cpuTimes{busy: 100, idle: 100}, 0, false},
	}
	for _, tt := range tests {
		got, ok := busyPercent(tt.prev, tt.cur)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: busyPercent = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

// BenchmarkSample measures one report's host reading: on the fixture tree and,
// where there is one, on the live /proc.
func BenchmarkSample(b *testing.B) {
	b.Run("fixture", func(b *testing.B) {
		h := newFakeHost(b)
		h.load("eight-cores-busy/t1")
		benchmarkSample(b, h.collector())
	})
	b.Run("live", func(b *testing.B) {
		if _, err := os.Stat("/proc/net/dev"); err != nil {
			b.Skip("no live /proc:", err)
		}
		benchmarkSample(b, NewCollector(Config{DiskPath: "/"}))
	})
}

func benchmarkSample(b *testing.B, c *Collector) {
	ctx := b.Context()
	if _, err := c.Sample(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Sample(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
