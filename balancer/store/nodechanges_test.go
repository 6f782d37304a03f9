package store

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// TestNodeChanges: every write of a node row through one store (one
// replica) is in the next NodeChanges of another, and a deletion is
// among its Deleted.
func TestNodeChanges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, b backend) {
		ctx := t.Context()
		w := b.open(t) // the other replica
		a, c, d := addNode(t, w, "a"), addNode(t, w, "c"), addNode(t, w, "d")
		full, err := s.NodeChanges(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !full.Full || len(full.Nodes) != 3 || full.Next <= 0 {
			t.Fatalf("first read: full %v, %d nodes, next %d; want the whole fleet of 3 and a cursor", full.Full, len(full.Nodes), full.Next)
		}
		cursor := full.Next
		// read checks that the changes since the cursor have the nodes
		// named (as they now stand) and the deleted IDs. On SQLite they
		// are exactly those; on PostgreSQL the read may start earlier (a
		// transaction of another test in the cluster may be running) and
		// bring back more.
		read := func(what string, names []string, deleted ...string) map[string]records.Node {
			t.Helper()
			ch, err := s.NodeChanges(ctx, cursor)
			if err != nil {
				t.Fatal(err)
			}
			if ch.Full {
				t.Fatalf("%s: a read from a cursor is a whole-fleet read", what)
			}
			if ch.Next < cursor {
				t.Fatalf("%s: cursor went back from %d to %d", what, cursor, ch.Next)
			}
			cursor = ch.Next
			got := map[string]records.Node{}
			for _, n := range ch.Nodes {
				got[n.Name] = n
			}
			for _, name := range names {
				if _, ok := got[name]; !ok {
					t.Errorf("%s: node %s not among the changes %v", what, name, slices.Collect(maps.Keys(got)))
				}
			}
			for _, id := range deleted {
				if !slices.Contains(ch.Deleted, id) {
					t.Errorf("%s: node %s not among the deleted %v", what, id, ch.Deleted)
				}
			}
			if s.Dialect() == sqliteDialect && (len(got) != len(names) || len(ch.Deleted) != len(deleted)) {
				t.Errorf("%s: changes %v deleted %v, want only %v deleted %v", what, slices.Collect(maps.Keys(got)), ch.Deleted, names, deleted)
			}
			return got
		}
		read("nothing written", nil)

		if _, err := w.SetNodeState(ctx, a.ID, fleet.Cordoned); err != nil {
			t.Fatal(err)
		}
		if got := read("state", []string{"a"}); got["a"].State != fleet.Cordoned {
			t.Errorf("state: a is %s, want cordoned", got["a"].State)
		}
		if ok, err := w.SetNodeStateIf(ctx, c.ID, fleet.Enabled, fleet.Disabled); err != nil || !ok {
			t.Fatal(ok, err)
		}
		read("state if", []string{"c"})
		at := t0.Add(time.Minute)
		if _, err := w.RecordReports(ctx, []records.Report{{NodeID: a.ID, Seq: 7, ReceivedAt: at, Load: fleet.Load{Meetings: 7, BBBHealthy: true}}}); err != nil {
			t.Fatal(err)
		}
		if got := read("report", []string{"a"}); !got["a"].LastReportAt.Equal(at) || got["a"].Load.Meetings != 7 {
			t.Errorf("report: a reported at %s with %d meetings, want %s and 7", got["a"].LastReportAt, got["a"].Load.Meetings, at)
		}
		if err := w.RecordPoll(ctx, c.ID, at, fleet.Load{Meetings: 3}); err != nil {
			t.Fatal(err)
		}
		read("poll", []string{"c"})
		if _, err := w.SetNodeCredential(ctx, a.ID, "cred-hash"); err != nil {
			t.Fatal(err)
		}
		if got := read("credential", []string{"a"}); got["a"].CredentialHash != "cred-hash" {
			t.Errorf("credential: %q", got["a"].CredentialHash)
		}
		if _, err := w.AllowTakeover(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		read("takeover", []string{"c"})
		if err := w.RenameNode(ctx, a.ID, "a2"); err != nil {
			t.Fatal(err)
		}
		read("rename", []string{"a2"})
		d.Tags, d.LoadMultiplier, d.Secret = []string{"big"}, 2, "new-secret"
		if _, err := w.UpsertNode(ctx, d); err != nil {
			t.Fatal(err)
		}
		if got := read("tags, multiplier, secret", []string{"d"}); !slices.Equal(got["d"].Tags, []string{"big"}) || got["d"].LoadMultiplier != 2 || got["d"].Secret != "new-secret" {
			t.Errorf("upsert: %+v", got["d"])
		}
		addNode(t, w, "e")
		read("new node", []string{"e"})
		if err := w.DeleteNode(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		if got := read("deletion", nil, c.ID); len(got) > 0 && got["c"].ID != "" {
			t.Errorf("deletion: the deleted node is among the changes")
		}
		read("nothing more", nil)
	})
}

// TestNodeChangesOutOfOrderCommit: on PostgreSQL a transaction that took a
// lower marker can commit after a read has seen a higher one; the next read
// still has its write.
func TestNodeChangesOutOfOrderCommit(t *testing.T) {
	b := backend{dsn: backends[1].dsn(t)}
	s, w := b.open(t), b.open(t)
	ctx := t.Context()
	slow, fast := addNode(t, w, "slow"), addNode(t, w, "fast")
	ch, err := s.NodeChanges(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The slow writer takes its marker (its transaction ID) first and
	// holds its transaction open.
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, w.q(`UPDATE nodes SET state = 'disabled', changed = `+w.changeMark()+` WHERE id = ?`), slow.ID); err != nil {
		t.Fatal(err)
	}
	// The fast one takes a higher marker and commits.
	if _, err := w.SetNodeState(ctx, fast.ID, fleet.Cordoned); err != nil {
		t.Fatal(err)
	}
	ch, err = s.NodeChanges(ctx, ch.Next)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]records.Node{}
	for _, n := range ch.Nodes {
		seen[n.Name] = n
	}
	if seen["fast"].State != fleet.Cordoned {
		t.Fatalf("the committed change is not read: %+v", ch.Nodes)
	}
	if seen["slow"].State == fleet.Disabled {
		t.Fatal("an uncommitted change is read")
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var slowMark, fastMark int64
	if err := w.db.QueryRowContext(ctx, `SELECT (SELECT changed FROM nodes WHERE name = 'slow'), (SELECT changed FROM nodes WHERE name = 'fast')`).Scan(&slowMark, &fastMark); err != nil {
		t.Fatal(err)
	}
	if slowMark >= fastMark {
		t.Fatalf("markers: slow %d, fast %d: the commits were not out of order, the test shows nothing", slowMark, fastMark)
	}
	ch, err = s.NodeChanges(ctx, ch.Next)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range ch.Nodes {
		found = found || n.Name == "slow" && n.State == fleet.Disabled
	}
	if !found {
		t.Fatalf("the change committed late (marker %d, after a read that saw %d) is never read", slowMark, fastMark)
	}
}

// TestNodeChangesSkipsOwnReports: a replica's refresh leaves out the rows
// whose newest write since its cursor is one of its own flushed reports,
// and reads every row another writer touched since, whether before or
// after its own report: a state change by another replica is never hidden
// by this replica's report on the same node.
func TestNodeChangesSkipsOwnReports(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, b backend) {
		ctx := t.Context()
		w := b.open(t) // the other replica
		a, c, d, e := addNode(t, w, "a"), addNode(t, w, "c"), addNode(t, w, "d"), addNode(t, w, "e")
		full, err := s.NodeChanges(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		cursor := full.Next
		report := func(st *Store, id string, at time.Time) int64 {
			t.Helper()
			mark, err := st.RecordReports(ctx, []records.Report{{NodeID: id, Seq: 1, ReceivedAt: at, Load: fleet.Load{Meetings: 1, BBBHealthy: true}}})
			if err != nil {
				t.Fatal(err)
			}
			return mark
		}
		// c: changed by the other replica first, then reported here.
		if _, err := w.SetNodeState(ctx, c.ID, fleet.Cordoned); err != nil {
			t.Fatal(err)
		}
		// e: reported by the other replica between two of this one's
		// flushes, its marker between theirs.
		own := []int64{report(s, a.ID, t0.Add(time.Minute))}
		report(w, e.ID, t0.Add(time.Minute))
		own = append(own, report(s, c.ID, t0.Add(time.Minute)))
		// d: reported here, then cordoned by the other replica.
		own = append(own, report(s, d.ID, t0.Add(time.Minute)))
		if _, err := w.SetNodeState(ctx, d.ID, fleet.Cordoned); err != nil {
			t.Fatal(err)
		}
		ch, err := s.NodeChanges(ctx, cursor, own...)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]records.Node{}
		for _, n := range ch.Nodes {
			got[n.Name] = n
		}
		if got["c"].State != fleet.Cordoned || got["d"].State != fleet.Cordoned {
			t.Errorf("another replica's changes: c %q, d %q; want both read, cordoned (read %v)", got["c"].State, got["d"].State, slices.Collect(maps.Keys(got)))
		}
		if _, ok := got["a"]; ok {
			t.Errorf("a's only change since the cursor is this replica's own report: read anyway")
		}
		if _, ok := got["e"]; !ok {
			t.Errorf("e's report through the other replica, between this one's flushes, is not read")
		}
		// Without the skip, the own report is read like any other write.
		if ch, err = s.NodeChanges(ctx, cursor); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(ch.Nodes, func(n records.Node) bool { return n.Name == "a" }) {
			t.Errorf("no skip: a's report is not among the changes")
		}
		// A newer report through the other replica is read, own marker or not.
		cursor = ch.Next
		report(w, a.ID, t0.Add(2*time.Minute))
		if ch, err = s.NodeChanges(ctx, cursor, own...); err != nil {
			t.Fatal(err)
		}
		if i := slices.IndexFunc(ch.Nodes, func(n records.Node) bool { return n.Name == "a" }); i < 0 || !ch.Nodes[i].LastReportAt.Equal(t0.Add(2*time.Minute)) {
			t.Errorf("the other replica's newer report of a is not read")
		}
	})
}
