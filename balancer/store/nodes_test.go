package store

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/fleet"
)

func TestUpsertNode(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, b backend) {
		ctx := t.Context()
		in := records.Node{
			Name: "bbb1", URL: "https://bbb1.example.com/bigbluebutton/api/", Secret: "s1",
			Tags: []string{"eu", "big"}, ReportInterval: 5 * time.Second, AgentVersion: "1.0.0", CreatedAt: t0,
		}
		first, err := s.UpsertNode(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if len(first.ID) != 32 {
			t.Errorf("new ID %q: want 32 hex digits", first.ID)
		}
		want := in
		want.ID, want.State, want.Role, want.Source, want.LoadMultiplier = first.ID, fleet.Enabled, fleet.RoleBBB, records.SourceAgent, 1
		if !reflect.DeepEqual(first, want) {
			t.Errorf("insert returned\n %+v\nwant %+v", first, want)
		}
		if got, err := s.Node(ctx, first.ID); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Node(%s) = %+v, %v; want %+v", first.ID, got, err, want)
		}

		// The operator cordons it and a report arrives; then the agent
		// registers again, with new details.
		if _, err := s.SetNodeState(ctx, first.ID, fleet.Cordoned); err != nil {
			t.Fatal(err)
		}
		report := records.Report{NodeID: first.ID, Seq: 3, ReceivedAt: t0.Add(time.Minute), Load: fleet.Load{Meetings: 2, BBBHealthy: true}}
		if _, err := s.RecordReports(ctx, []records.Report{report}); err != nil {
			t.Fatal(err)
		}
		update := records.Node{
			ID: "ignored", Name: "bbb1", URL: "https://bbb1.example.org/bigbluebutton/api/", Secret: "s2",
			Role: fleet.RoleBBB, Tags: []string{"us"}, LoadMultiplier: 2.5, State: fleet.Disabled, Source: records.SourcePoll,
			AgentVersion: "1.1.0", ReportInterval: 10 * time.Second, CreatedAt: t0.Add(time.Hour),
			LastReportAt: t0.Add(time.Hour), LastSeq: 99,
		}
		second, err := s.UpsertNode(ctx, update)
		if err != nil {
			t.Fatal(err)
		}
		want = update
		want.ID, want.State, want.CreatedAt = first.ID, fleet.Cordoned, t0
		want.LastReportAt, want.LastSeq, want.Load = report.ReceivedAt, report.Seq, report.Load
		if !reflect.DeepEqual(second, want) {
			t.Errorf("update returned\n %+v\nwant %+v", second, want)
		}
		if got, err := s.NodeByName(ctx, "bbb1"); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("NodeByName(bbb1) = %+v, %v; want %+v", got, err, want)
		}

		t.Run("given ID and TURN node without URL", func(t *testing.T) {
			for _, name := range []string{"turn1", "turn2"} {
				n, err := s.UpsertNode(ctx, records.Node{ID: "id-" + name, Name: name, Role: fleet.RoleTURN, CreatedAt: t0})
				if err != nil {
					t.Fatal(err)
				}
				if n.ID != "id-"+name || n.URL != "" || n.Role != fleet.RoleTURN {
					t.Errorf("got %+v, want ID id-%s, no URL, role turn", n, name)
				}
			}
		})

		t.Run("concurrent upserts of one name make one node", func(t *testing.T) {
			other := b.open(t)
			ids := make(chan string, 16)
			var wg sync.WaitGroup
			for i := range cap(ids) {
				st := []*Store{s, other}[i%2]
				wg.Go(func() {
					n, err := st.UpsertNode(ctx, records.Node{Name: "racer", URL: "https://racer/bigbluebutton/api/", CreatedAt: t0})
					if err != nil {
						t.Error(err)
					}
					ids <- n.ID
				})
			}
			wg.Wait()
			close(ids)
			seen := map[string]bool{}
			for id := range ids {
				seen[id] = true
			}
			if len(seen) != 1 {
				t.Errorf("concurrent upserts returned IDs %v, want one", seen)
			}
		})

		t.Run("errors", func(t *testing.T) {
			if _, err := s.UpsertNode(ctx, records.Node{URL: "https://x/bigbluebutton/api/"}); err == nil {
				t.Error("no error for a node without name")
			}
			if _, err := s.UpsertNode(ctx, records.Node{Name: "x", State: "asleep"}); err == nil {
				t.Error("no error for an invalid state")
			}
			if _, err := s.Node(ctx, "nope"); !errors.Is(err, ErrNotFound) {
				t.Errorf("Node(nope): err = %v, want ErrNotFound", err)
			}
			if _, err := s.NodeByName(ctx, "nope"); !errors.Is(err, ErrNotFound) {
				t.Errorf("NodeByName(nope): err = %v, want ErrNotFound", err)
			}
		})
	})
}

func TestUpsertNodeURLConflict(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, b backend) {
		ctx := t.Context()
		addNode(t, s, "bbb1")
		addNode(t, s, "bbb2")
		tests := []struct {
			name string
			node records.Node
		}{
			{"insert with another node's URL", records.Node{Name: "bbb3", URL: "https://bbb1/bigbluebutton/api/", Secret: "topsecret"}},
			{"update to another node's URL", records.Node{Name: "bbb2", URL: "https://bbb1/bigbluebutton/api/", Secret: "topsecret"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := s.UpsertNode(ctx, tt.node)
				if !errors.Is(err, ErrConflict) {
					t.Fatalf("err = %v, want ErrConflict", err)
				}
				if !strings.Contains(err.Error(), `"bbb1"`) {
					t.Errorf("error %q does not name the node that has the URL", err)
				}
				if strings.Contains(err.Error(), "topsecret") {
					t.Errorf("error %q shows the secret", err)
				}
			})
		}
		nodes, err := s.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(nodes) != 2 || nodes[1].URL != "https://bbb2/bigbluebutton/api/" {
			t.Errorf("after conflicts, nodes = %+v; want bbb1 and bbb2 unchanged", nodes)
		}
	})
}

func TestNodesOrderedByName(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, b backend) {
		for _, name := range []string{"c", "a", "b"} {
			addNode(t, s, name)
		}
		nodes, err := s.Nodes(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, n := range nodes {
			names = append(names, n.Name)
		}
		if got := strings.Join(names, ","); got != "a,b,c" {
			t.Errorf("Nodes() names = %s, want a,b,c", got)
		}
	})
}

func TestRenameNode(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, b backend) {
		ctx := t.Context()
		polled, other := addNode(t, s, "bbb1.example.com"), addNode(t, s, "bbb2")
		if _, err := s.SetNodeState(ctx, polled.ID, fleet.Cordoned); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, id, to string
			wantErr      error
		}{
			{"rename", polled.ID, "bbb1", nil},
			{"same name again", polled.ID, "bbb1", nil},
			{"another node's name", polled.ID, "bbb2", ErrConflict},
			{"unknown node", "nope", "bbb9", ErrNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := s.RenameNode(ctx, tt.id, tt.to); !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want %v", err, tt.wantErr)
				}
			})
		}
		got, err := s.NodeByName(ctx, "bbb1")
		want := polled
		want.Name, want.State = "bbb1", fleet.Cordoned
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("renamed node = %+v, %v; want %+v", got, err, want)
		}
		if got, err := s.Node(ctx, other.ID); err != nil || got.Name != "bbb2" {
			t.Errorf("other node = %+v, %v; want it unchanged", got, err)
		}
		if err := s.RenameNode(ctx, polled.ID, ""); err == nil {
			t.Error("rename to an empty name: no error")
		}
	})
}

func TestNodeState(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, b backend) {
		ctx := t.Context()
		id := addNode(t, s, "bbb1").ID
		tests := []struct {
			name      string
			id        string
			from, to  fleet.AdminState
			cas       bool // SetNodeStateIf(from, to), else SetNodeState(to)
			wantOK    bool
			wantState fleet.AdminState
			wantErr   error
		}{
			{name: "set cordoned", id: id, to: fleet.Cordoned, wantState: fleet.Cordoned},
			{name: "CAS from enabled fails", id: id, cas: true, from: fleet.Enabled, to: fleet.Disabled, wantState: fleet.Cordoned},
			{name: "CAS from cordoned", id: id, cas: true, from: fleet.Cordoned, to: fleet.Disabled, wantOK: true, wantState: fleet.Disabled},
			{name: "set enabled", id: id, to: fleet.Enabled, wantState: fleet.Enabled},
			{name: "set unknown node", id: "nope", to: fleet.Enabled, wantErr: ErrNotFound},
			{name: "CAS unknown node", id: "nope", cas: true, from: fleet.Enabled, to: fleet.Cordoned, wantErr: ErrNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var err error
				if tt.cas {
					var ok bool
					ok, err = s.SetNodeStateIf(ctx, tt.id, tt.from, tt.to)
					if ok != tt.wantOK {
						t.Errorf("SetNodeStateIf = %v, want %v", ok, tt.wantOK)
					}
				} else {
					var n records.Node
					n, err = s.SetNodeState(ctx, tt.id, tt.to)
					if err == nil && n.State != tt.to {
						t.Errorf("SetNodeState returned state %s, want %s", n.State, tt.to)
					}
				}
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if tt.wantErr != nil {
					return
				}
				if n, err := s.Node(ctx, tt.id); err != nil || n.State != tt.wantState {
					t.Errorf("stored state %s (%v), want %s", n.State, err, tt.wantState)
				}
			})
		}
		if _, err := s.SetNodeState(ctx, id, "asleep"); err == nil {
			t.Error("SetNodeState(asleep): no error")
		}
	})
}

func TestDeleteNode(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, b backend) {
		ctx := t.Context()
		gone, kept := addNode(t, s, "gone"), addNode(t, s, "kept")
		for i, n := range []records.Node{gone, gone, kept} {
			if _, _, err := s.ClaimMeeting(ctx, records.Meeting{MeetingID: fmt.Sprint("m", i), NodeID: n.ID, PlacedAt: t0}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.DeleteNode(ctx, gone.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Node(ctx, gone.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleted node: err = %v, want ErrNotFound", err)
		}
		for _, id := range []string{"m0", "m1"} {
			if _, err := s.Meeting(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Errorf("placement %s of the deleted node: err = %v, want ErrNotFound", id, err)
			}
		}
		if m, err := s.Meeting(ctx, "m2"); err != nil || m.NodeID != kept.ID {
			t.Errorf("placement on the other node: %+v, %v", m, err)
		}
		if err := s.DeleteNode(ctx, gone.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleting again: err = %v, want ErrNotFound", err)
		}
	})
}

func TestRecordReports(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, b backend) {
		ctx := t.Context()
		a, c := addNode(t, s, "a"), addNode(t, s, "c")
		report := func(n records.Node, seq int64, at time.Duration) records.Report {
			return records.Report{NodeID: n.ID, Seq: seq, ReceivedAt: t0.Add(at), Load: fleet.Load{Meetings: int(seq), CPUPercent: 12.5, MemTotalBytes: 1 << 40}}
		}
		type want struct {
			seq int64
			at  time.Duration
		}
		tests := []struct {
			name  string
			batch []records.Report
			a, c  want
		}{
			{"first reports", []records.Report{report(a, 1, 10*time.Second), report(c, 1, 10*time.Second)},
				want{1, 10 * time.Second}, want{1, 10 * time.Second}},
			{"newest of a batch counts, in any order", []records.Report{report(a, 3, 30*time.Second), report(a, 2, 20*time.Second)},
				want{3, 30 * time.Second}, want{1, 10 * time.Second}},
			{"stale batch ignored, newer applied", []records.Report{report(a, 2, 20*time.Second), report(c, 2, 20*time.Second)},
				want{3, 30 * time.Second}, want{2, 20 * time.Second}},
			{"same receive time ignored", []records.Report{report(c, 9, 20*time.Second)},
				want{3, 30 * time.Second}, want{2, 20 * time.Second}},
			{"unknown node ignored", []records.Report{{NodeID: "removed", Seq: 1, ReceivedAt: t0.Add(time.Hour)}, report(c, 4, 40*time.Second)},
				want{3, 30 * time.Second}, want{4, 40 * time.Second}},
			{"empty batch", nil, want{3, 30 * time.Second}, want{4, 40 * time.Second}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if _, err := s.RecordReports(ctx, tt.batch); err != nil {
					t.Fatal(err)
				}
				for _, x := range []struct {
					node records.Node
					want want
				}{{a, tt.a}, {c, tt.c}} {
					got, err := s.Node(ctx, x.node.ID)
					if err != nil {
						t.Fatal(err)
					}
					wantLoad := report(x.node, x.want.seq, x.want.at).Load
					if got.LastSeq != x.want.seq || !got.LastReportAt.Equal(t0.Add(x.want.at)) || got.Load != wantLoad {
						t.Errorf("node %s: seq %d at %v load %+v; want seq %d at %v load %+v", x.node.Name,
							got.LastSeq, got.LastReportAt, got.Load, x.want.seq, t0.Add(x.want.at), wantLoad)
					}
				}
			})
		}
	})
}

// TestRecordReportsFailsWhole: a flush that fails on one row writes none of
// them, and leaves the writer's connection out of its transaction: the next
// flush and any other write work. (SQLite: its flush drives the driver's
// connection itself; a trigger fails the row.)
func TestRecordReportsFailsWhole(t *testing.T) {
	s := backend{dsn: backends[0].dsn(t)}.open(t)
	ctx := t.Context()
	a, boom, c := addNode(t, s, "a"), addNode(t, s, "boom"), addNode(t, s, "c")
	if _, err := s.db.ExecContext(ctx, `CREATE TRIGGER fail_boom BEFORE UPDATE ON node_reports WHEN NEW.id = '`+boom.ID+`'
		BEGIN SELECT RAISE(ABORT, 'boom refused'); END`); err != nil {
		t.Fatal(err)
	}
	report := func(n records.Node, seq int64) records.Report {
		return records.Report{NodeID: n.ID, Seq: seq, ReceivedAt: t0.Add(time.Duration(seq) * time.Second), Load: fleet.Load{Meetings: int(seq)}}
	}
	var batch []records.Report
	for seq := range int64(200) { // past flushYieldRows
		batch = append(batch, report(a, seq+1), report(c, seq+1))
	}
	batch = append(batch, report(boom, 1))
	if _, err := s.RecordReports(ctx, batch); err == nil || !strings.Contains(err.Error(), "boom refused") {
		t.Fatalf("RecordReports with a failing row: %v, want the row's error", err)
	}
	for _, n := range []records.Node{a, c} {
		if got, err := s.Node(ctx, n.ID); err != nil || got.LastSeq != 0 {
			t.Errorf("%s after the failed flush: seq %d, %v; want nothing written", n.Name, got.LastSeq, err)
		}
	}
	if _, err := s.RecordReports(ctx, []records.Report{report(a, 7), report(c, 7)}); err != nil {
		t.Fatalf("the next flush: %v", err)
	}
	if got, err := s.Node(ctx, c.ID); err != nil || got.LastSeq != 7 {
		t.Errorf("c after the next flush: seq %d, %v; want 7", got.LastSeq, err)
	}
	if _, err := s.SetNodeState(ctx, a.ID, fleet.Cordoned); err != nil {
		t.Errorf("a write after the failed flush: %v", err)
	}
}

func TestRecordPoll(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, b backend) {
		ctx := t.Context()
		n := addNode(t, s, "polled")
		tests := []struct {
			name     string
			id       string
			at       time.Duration
			meetings int
			wantErr  error
			wantAt   time.Duration
			wantSeq  int64
			wantLoad int
		}{
			{name: "first", id: n.ID, at: 10 * time.Second, meetings: 1, wantAt: 10 * time.Second, wantSeq: 1, wantLoad: 1},
			{name: "newer", id: n.ID, at: 20 * time.Second, meetings: 2, wantAt: 20 * time.Second, wantSeq: 2, wantLoad: 2},
			{name: "stale ignored", id: n.ID, at: 15 * time.Second, meetings: 9, wantAt: 20 * time.Second, wantSeq: 2, wantLoad: 2},
			{name: "unknown node", id: "nope", at: time.Hour, wantErr: ErrNotFound, wantAt: 20 * time.Second, wantSeq: 2, wantLoad: 2},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := s.RecordPoll(ctx, tt.id, t0.Add(tt.at), fleet.Load{Meetings: tt.meetings})
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				got, err := s.Node(ctx, n.ID)
				if err != nil {
					t.Fatal(err)
				}
				if !got.LastReportAt.Equal(t0.Add(tt.wantAt)) || got.LastSeq != tt.wantSeq || got.Load.Meetings != tt.wantLoad {
					t.Errorf("at %v seq %d meetings %d; want at %v seq %d meetings %d",
						got.LastReportAt, got.LastSeq, got.Load.Meetings, t0.Add(tt.wantAt), tt.wantSeq, tt.wantLoad)
				}
			})
		}
	})
}

// TestSQLiteConnectionsRenewed: SQLite's writing connection is closed after
// sqliteWriterLifetime, and a new one works as the first did: the flush
// through the driver's connection, the writer's page cache, foreign keys (a
// node's delete takes its report with it), readers seeing the writes.
func TestSQLiteConnectionsRenewed(t *testing.T) {
	s := backend{dsn: backends[0].dsn(t)}.open(t)
	ctx := t.Context()
	if got := s.db.Stats().MaxOpenConnections; got != 1 {
		t.Fatalf("the writer pool allows %d connections, want 1", got)
	}
	a := addNode(t, s, "a")
	flush := func(seq int64) {
		t.Helper()
		if _, err := s.RecordReports(ctx, []records.Report{{NodeID: a.ID, Seq: seq, ReceivedAt: t0.Add(time.Duration(seq) * time.Second)}}); err != nil {
			t.Fatalf("flush %d: %v", seq, err)
		}
	}
	flush(1)
	// The writer's connection expires as soon as it is handed back.
	s.db.SetConnMaxLifetime(time.Nanosecond)
	for seq := int64(2); seq <= 4; seq++ {
		flush(seq)
		if got, err := s.Node(ctx, a.ID); err != nil || got.LastSeq != seq {
			t.Fatalf("after flush %d through a new connection: seq %d, %v", seq, got.LastSeq, err)
		}
	}
	if n := s.db.Stats().MaxLifetimeClosed; n == 0 {
		t.Fatal("no writer connection was closed for its lifetime: the test renewed nothing")
	}
	var cacheSize, foreignKeys int
	if err := s.db.QueryRowContext(ctx, "PRAGMA cache_size").Scan(&cacheSize); err != nil {
		t.Fatal(err)
	}
	if err := s.db.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&foreignKeys); err != nil {
		t.Fatal(err)
	}
	if cacheSize != -sqliteWriterCacheKiB || foreignKeys != 1 {
		t.Errorf("a new writer connection: cache_size %d, foreign_keys %d; want %d and 1", cacheSize, foreignKeys, -sqliteWriterCacheKiB)
	}
	if err := s.DeleteNode(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	var reports int
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM node_reports").Scan(&reports); err != nil {
		t.Fatal(err)
	}
	if reports != 0 {
		t.Errorf("%d reports left after their node's delete on a new connection: foreign keys off", reports)
	}
}
