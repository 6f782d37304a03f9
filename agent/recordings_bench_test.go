package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/internal/testenv"
	"github.com/bbb-agent/bbb-agent/recordings"
)

// benchMetadata is a published format's metadata.xml, as BBB writes it.
const benchMetadata = `<?xml version="1.0" encoding="UTF-8"?>
<recording>
  <id>%[1]s</id>
  <state>published</state>
  <published>true</published>
  <start_time>1700000000000</start_time>
  <end_time>1700000600000</end_time>
  <participants>3</participants>
  <meeting id="%[1]s" externalId="ext-%[1]s" name="Meeting %[1]s" breakout="false"/>
  <meta>
    <isBreakout>false</isBreakout>
    <meetingName>Meeting %[1]s</meetingName>
  </meta>
  <playback>
    <format>presentation</format>
    <link>https://bench1.example.com/playback/presentation/2.3/%[1]s</link>
    <processing_time>4567</processing_time>
    <duration>600000</duration>
    <size>%[2]d</size>
  </playback>
  <raw_size>%[2]d</raw_size>
</recording>
`

// benchRecording is one synthetic recording to ship: files of the given
// sizes (incompressible bytes), in a presentation format.
type benchRecording struct {
	files []int64
}

// benchShipLoads are the shipping benchmark's loads: one recording with a
// 1 GiB webcams file, and 200 small ones (a few files of 16 KiB to 1 MiB,
// about 2 MiB each, like a short presentation recording).
var benchShipLoads = []struct {
	name string
	recs func() []benchRecording
}{
	{"1GiB", func() []benchRecording {
		return []benchRecording{{files: []int64{1 << 30, 64 << 10, 16 << 10}}}
	}},
	{"200x2MiB", func() []benchRecording {
		out := make([]benchRecording, 200)
		for i := range out {
			out[i] = benchRecording{files: []int64{1 << 20, 512 << 10, 256 << 10, 128 << 10, 64 << 10, 16 << 10}}
		}
		return out
	}},
}

// BenchmarkShipRecordings measures a bbb-agent process shipping
// recordings: the real binary, registered at a real bbb-balancer (which
// indexes every shipped format), shipping to the real S3 server
// (versitygw on loopback) or to a spool directory. The recordings are
// written first, outside the agent's recordings directory, and moved in
// at once; `recordings backfill` starts the clock and the last format
// indexed stops it.
//
//	MiB/s         bytes shipped over the wall time, to the last index
//	cpu-s         the agent's CPU time (user+system) while shipping
//	core-%        that CPU time over the wall time, in percent of one core
//	rss-MiB       the agent's resident memory at the end (VmRSS)
//	hwm-MiB       its peak resident memory since it started (VmHWM): bounded
//	              whatever the file size, as a media server's neighbour must be
//
// It measures once per sub-benchmark, whatever -benchtime asks.
func BenchmarkShipRecordings(b *testing.B) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		b.Skip("no /proc to read a process's CPU time and memory from")
	}
	bins := testenv.Build(b, testenv.AgentPkg, testenv.BalancerPkg, testenv.SimPkg)
	cmds := testenv.Commands{Agent: bins[0], Balancer: bins[1], Sim: bins[2]}
	for _, target := range []string{"s3", "spool"} {
		for _, load := range benchShipLoads {
			var fig *shipFigures
			b.Run(target+"/"+load.name, func(b *testing.B) {
				if fig == nil {
					fig = measureShipping(b, cmds, target, load.recs())
				}
				fig.report(b)
			})
		}
	}
}

type shipFigures struct {
	bytes    int64
	formats  int
	wall     time.Duration
	cpu      time.Duration
	mem      benchMemory
	memStart benchMemory
}

func (f *shipFigures) report(b *testing.B) {
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(f.bytes)/(1<<20)/f.wall.Seconds(), "MiB/s")
	b.ReportMetric(f.cpu.Seconds(), "cpu-s")
	b.ReportMetric(100*f.cpu.Seconds()/f.wall.Seconds(), "core-%")
	b.ReportMetric(float64(f.mem.rss)/1024, "rss-MiB")
	b.ReportMetric(float64(f.mem.hwm)/1024, "hwm-MiB")
	b.Logf("%d formats, %.1f MiB in %v; agent CPU %v; RSS before %.1f MiB, after %.1f MiB (anonymous %.1f MiB, file %.1f MiB), peak %.1f MiB",
		f.formats, float64(f.bytes)/(1<<20), f.wall.Round(time.Millisecond), f.cpu.Round(time.Millisecond),
		float64(f.memStart.rss)/1024, float64(f.mem.rss)/1024, float64(f.mem.anon)/1024, float64(f.mem.file)/1024, float64(f.mem.hwm)/1024)
}

func measureShipping(b *testing.B, bins testenv.Commands, target string, recs []benchRecording) *shipFigures {
	b.Helper()
	dir := b.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)

	var storageArgs, env []string
	switch target {
	case "s3":
		srv := testenv.S3(b)
		srv.CreateBucket(b, "bench")
		storageArgs = []string{"--recordings-storage", "s3://bench/fleet", "--recordings-s3-endpoint", srv.Endpoint}
		env = []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "AWS_REGION=" + srv.Region,
			"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
	case "spool":
		spool := filepath.Join(dir, "spool")
		if err := os.Mkdir(spool, 0o755); err != nil {
			b.Fatal(err)
		}
		storageArgs = []string{"--recordings-storage", "spool:" + spool}
	}

	// The recordings, written before the agent starts, beside its directory.
	staging, recDir := filepath.Join(dir, "staging"), filepath.Join(dir, "recordings")
	var total int64
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = benchRecordID(i)
		total += writeBenchRecording(b, staging, ids[i], r, uint64(i))
	}
	if err := os.MkdirAll(recDir, 0o755); err != nil {
		b.Fatal(err)
	}

	lb := testenv.StartBalancer(b, testenv.BalancerOpts{Bin: bins.Balancer, Secret: benchLBSecret, AgentToken: benchAgentToken,
		AdminToken: benchAdminToken, DataDir: filepath.Join(dir, "balancer"), ReadyWithin: benchReadyWithin})
	simProc := testenv.StartSim(b, testenv.SimOpts{Bin: bins.Sim, Secret: benchSimSecret,
		Args: []string{"--log-level", "warn"}, ReadyWithin: benchReadyWithin})
	socket := filepath.Join(dir, "admin.sock")
	config := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(config, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	agent := testenv.StartAgent(b, testenv.AgentOpts{Bin: bins.Agent, ReadyWithin: benchReadyWithin, Env: env, Args: append([]string{"run",
		"--config", config, "--balancer-url", lb.Ready, "--agent-token", benchAgentToken,
		"--bbb-url", simProc.Ready, "--bbb-secret", benchSimSecret, "--node-name", benchNode,
		"--state-dir", filepath.Join(dir, "state"), "--admin-socket", socket,
		"--report-interval", "1s", "--logind=false", "--recordings-dir", recDir}, storageArgs...)})
	admin := NewAdminClient(socket)
	waitBench(b, agent, "the agent registered and ready", 15*time.Second, 50*time.Millisecond, func() (bool, error) {
		st, err := admin.Status(ctx)
		if err != nil {
			return false, nil
		}
		return st.Registered && st.State == Ready, nil
	})
	if err := os.Rename(filepath.Join(staging, "published"), filepath.Join(recDir, "published")); err != nil {
		b.Fatal(err)
	}

	pid := agent.Pid()
	memStart := processMemory(b, pid)
	cpu0, start := processCPU(b, pid), time.Now()
	n, err := admin.RecordingsBackfill(ctx)
	if err != nil || n != len(recs) {
		b.Fatalf("recordings backfill: %d formats queued, want %d (%v)", n, len(recs), err)
	}
	var rows []recordings.Row
	waitBench(b, agent, fmt.Sprintf("%d recordings shipped and indexed", len(recs)), 10*time.Minute, 20*time.Millisecond, func() (bool, error) {
		rows, err = admin.RecordingsList(ctx)
		if err != nil {
			return false, err
		}
		done := 0
		for _, r := range rows {
			switch r.State {
			case recordings.StateIndexed:
				done++
			case recordings.StateFailed, recordings.StateQuarantined:
				return false, fmt.Errorf("%s/%s %s: %s", r.RecordID, r.Format, r.State, r.LastError)
			}
		}
		return done == len(recs), nil
	})
	cpu1, end := processCPU(b, pid), time.Now()
	mem := processMemory(b, pid)
	var shipped int64
	for _, r := range rows {
		shipped += r.Size
	}
	if shipped < total {
		b.Fatalf("the queue says %d bytes shipped, the recordings hold %d", shipped, total)
	}
	return &shipFigures{bytes: total, formats: len(rows), wall: end.Sub(start), cpu: cpu1 - cpu0, mem: mem, memStart: memStart}
}

func benchRecordID(i int) string {
	sum := sha256.Sum256(fmt.Append(nil, "bench-meeting", i))
	return hex.EncodeToString(sum[:20]) + fmt.Sprintf("-%d", 1700000000000+i)
}

// writeBenchRecording writes a published presentation format of r under
// root and returns its size.
func writeBenchRecording(b *testing.B, root, id string, r benchRecording, seed uint64) int64 {
	b.Helper()
	dir := filepath.Join(root, "published", "presentation", id)
	if err := os.MkdirAll(filepath.Join(dir, "video"), 0o755); err != nil {
		b.Fatal(err)
	}
	var size int64
	noise := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	for i, n := range r.files {
		p := filepath.Join(dir, "video", fmt.Sprintf("part-%d.webm", i))
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		_, err = io.CopyN(f, noise, n)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			b.Fatal(err)
		}
		size += n
	}
	md := fmt.Appendf(nil, benchMetadata, id, size)
	if err := os.WriteFile(filepath.Join(dir, "metadata.xml"), md, 0o644); err != nil {
		b.Fatal(err)
	}
	return size + int64(len(md))
}
