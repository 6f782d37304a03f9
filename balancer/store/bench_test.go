package store

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// benchFleet is the fleet size of the benchmarks: 10,000 nodes reporting
// every 5 s send 2,000 reports a second, flushed as one batch.
const benchFleet, benchBatch = 10_000, 2_000

// forEachBenchBackend runs f against a fresh database of each dialect
// holding benchFleet nodes.
func forEachBenchBackend(b *testing.B, f func(b *testing.B, s *Store, nodes []records.Node)) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := backend{dsn: be.dsn(b)}.open(b)
			nodes := make([]records.Node, benchFleet)
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					for i := w; i < benchFleet; i += 8 {
						n, err := s.UpsertNode(b.Context(), records.Node{
							Name: fmt.Sprintf("bbb%05d", i), URL: fmt.Sprintf("https://bbb%05d/bigbluebutton/api/", i),
							Secret: "secret", ReportInterval: 5 * time.Second, CreatedAt: t0,
						})
						if err != nil {
							b.Error(err)
							return
						}
						nodes[i] = n
					}
				})
			}
			wg.Wait()
			if b.Failed() {
				b.FailNow()
			}
			f(b, s, nodes)
		})
	}
}

// BenchmarkRecordReports writes one flush: a batch of 2,000 reports for
// 2,000 of the 10,000 nodes, each newer than the stored one.
func BenchmarkRecordReports(b *testing.B) {
	forEachBenchBackend(b, func(b *testing.B, s *Store, nodes []records.Node) {
		batch := make([]records.Report, benchBatch)
		load := fleet.Load{CPUPercent: 42.5, CPUCores: 16, Load1: 3.1, Load5: 2.9, Load15: 2.5, MemTotalBytes: 64 << 30,
			MemUsedBytes: 20 << 30, Meetings: 12, Participants: 180, Voice: 60, Video: 40, Listeners: 120,
			LargestMeeting: 50, BBBHealthy: true, BBBVersion: "3.0.4"}
		// Nodes report at their own phase: a second's reports are spread
		// over the table, not a run of neighbouring rows.
		order := rand.New(rand.NewPCG(1, 2)).Perm(benchFleet)
		seq := int64(0)
		for b.Loop() {
			seq++
			for i := range batch {
				batch[i] = records.Report{
					NodeID: nodes[order[(int(seq)*benchBatch+i)%benchFleet]].ID, Seq: seq,
					ReceivedAt: t0.Add(time.Duration(seq) * time.Second), Load: load,
				}
			}
			if _, err := s.RecordReports(b.Context(), batch); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(benchBatch*b.N)/b.Elapsed().Seconds(), "reports/s")
	})
}

// BenchmarkClaimMeeting places new meetings on the nodes, one at a time.
func BenchmarkClaimMeeting(b *testing.B) {
	forEachBenchBackend(b, func(b *testing.B, s *Store, nodes []records.Node) {
		i := 0
		for b.Loop() {
			i++
			m := records.Meeting{MeetingID: fmt.Sprint("meeting-", i), NodeID: nodes[i%benchFleet].ID, PlacedAt: t0}
			if _, won, err := s.ClaimMeeting(b.Context(), m); err != nil || !won {
				b.Fatalf("claim %s: won %v, %v", m.MeetingID, won, err)
			}
		}
	})
}

// BenchmarkRefreshReads is what a replica's registry reads each second with
// 100,000 meetings placed: the nodes changed by one flush of 2,000 reports
// (NodeChanges from a cursor), or the whole fleet, and the reservations
// (PlacedSince).
func BenchmarkRefreshReads(b *testing.B) {
	forEachBenchBackend(b, func(b *testing.B, s *Store, nodes []records.Node) {
		ctx := b.Context()
		const meetings = 100_000
		type row struct {
			M string `json:"m"`
			N string `json:"n"`
		}
		for start := 0; start < meetings; start += 10_000 {
			rows := make([]row, 0, 10_000)
			for i := start; i < start+10_000; i++ {
				rows = append(rows, row{M: fmt.Sprint("meeting-", i), N: nodes[i%benchFleet].ID})
			}
			batch, _ := json.Marshal(rows)
			if _, err := s.exec(ctx, s.db, `INSERT INTO meetings (meeting_id, node_id, placed_at)
				SELECT CAST(value ->> 'm' AS TEXT), CAST(value ->> 'n' AS TEXT), 1 FROM `+s.jsonElements(false), string(batch)); err != nil {
				b.Fatal(err)
			}
		}
		batch := make([]records.Report, benchBatch)
		seq := int64(0)
		flush := func() {
			seq++
			for i := range batch {
				batch[i] = records.Report{NodeID: nodes[(int(seq)*benchBatch+i)%benchFleet].ID, Seq: seq,
					ReceivedAt: t0.Add(time.Duration(seq) * time.Second), Load: fleet.Load{Meetings: 10, BBBHealthy: true}}
			}
			if _, err := s.RecordReports(ctx, batch); err != nil {
				b.Fatal(err)
			}
		}
		for _, mode := range []string{"changes", "whole-fleet", "placed-since"} {
			b.Run(mode, func(b *testing.B) {
				ch, err := s.NodeChanges(ctx, 0)
				if err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					b.StopTimer()
					flush()
					b.StartTimer()
					switch mode {
					case "changes":
						ch, err = s.NodeChanges(ctx, ch.Next)
					case "whole-fleet":
						_, err = s.Nodes(ctx)
					default:
						_, err = s.PlacedSince(ctx, t0.Add(time.Duration(seq-3)*time.Second))
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})
}

// BenchmarkPruneMeetings is the pruning a report asks for once a minute
// while its node's meetings stay the same (10 running, all placed): nothing
// to delete, the common case. 100,000 placements over the 10,000 nodes.
func BenchmarkPruneMeetings(b *testing.B) {
	forEachBenchBackend(b, func(b *testing.B, s *Store, nodes []records.Node) {
		ctx := b.Context()
		running := make([][]string, benchFleet)
		for i := range 100_000 {
			id := fmt.Sprint("meeting-", i)
			if _, _, err := s.ClaimMeeting(ctx, records.Meeting{MeetingID: id, NodeID: nodes[i%benchFleet].ID, PlacedAt: t0}); err != nil {
				b.Fatal(err)
			}
			running[i%benchFleet] = append(running[i%benchFleet], id)
		}
		i := 0
		for b.Loop() {
			i = (i + 7919) % benchFleet // spread over the table, as reports are
			if n, err := s.PruneMeetings(ctx, nodes[i].ID, running[i], t0.Add(time.Hour)); err != nil || n != 0 {
				b.Fatalf("prune %s: %d deleted, %v", nodes[i].Name, n, err)
			}
		}
	})
}
