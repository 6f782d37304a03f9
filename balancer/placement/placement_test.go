package placement

import (
	"errors"
	"fmt"
	"testing"

	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/fleet"
)

type opt func(*Candidate)

// mk is an enabled, online, healthy, untagged bbb node with the given
// participants and nothing else loaded.
func mk(name string, participants int, opts ...opt) Candidate {
	c := Candidate{
		Node: records.Node{
			ID:    "id-" + name,
			Name:  name,
			Role:  fleet.RoleBBB,
			State: fleet.Enabled,
			Load:  fleet.Load{Participants: participants, BBBHealthy: true},
		},
		Online: true,
	}
	for _, o := range opts {
		o(&c)
	}
	return c
}

func tags(t ...string) opt           { return func(c *Candidate) { c.Node.Tags = t } }
func state(s fleet.AdminState) opt   { return func(c *Candidate) { c.Node.State = s } }
func role(r fleet.Role) opt          { return func(c *Candidate) { c.Node.Role = r } }
func cpu(p float64) opt              { return func(c *Candidate) { c.Node.Load.CPUPercent = p } }
func reserved(n int) opt             { return func(c *Candidate) { c.Reserved = n } }
func multiplier(m float64) opt       { return func(c *Candidate) { c.Node.LoadMultiplier = m } }
func offline(c *Candidate)           { c.Online = false }
func unhealthy(c *Candidate)         { c.Node.Load.BBBHealthy = false }
func noCeiling(p *Policy)            { p.CPUCeiling = 0 }
func expect(n float64) func(*Policy) { return func(p *Policy) { p.ExpectedParticipants = n } }

type pickCase struct {
	name   string
	policy func(*Policy)
	cands  []Candidate
	req    TagRequest
	want   string // node name; empty when err is set
	err    error
	over   bool
	sick   bool
	fall   bool
}

func runPick(t *testing.T, tests []pickCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultPolicy()
			if tt.policy != nil {
				tt.policy(&p)
			}
			d, err := p.Pick(tt.cands, tt.req)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Pick error = %v, want %v (picked %q)", err, tt.err, d.Node.Name)
				}
				return
			}
			if err != nil {
				t.Fatalf("Pick: %v", err)
			}
			if d.Node.Name != tt.want || d.OverCeiling != tt.over || d.Unhealthy != tt.sick || d.Fallback != tt.fall {
				t.Fatalf("Pick = %s over=%v unhealthy=%v fallback=%v, want %s over=%v unhealthy=%v fallback=%v",
					d.Node.Name, d.OverCeiling, d.Unhealthy, d.Fallback, tt.want, tt.over, tt.sick, tt.fall)
			}
		})
	}
}

func TestPickEligibility(t *testing.T) {
	runPick(t, []pickCase{
		{name: "no candidates", err: ErrNoNode},
		{name: "least loaded", cands: []Candidate{mk("a", 30), mk("b", 10), mk("c", 20)}, want: "b"},
		{name: "cordoned and disabled get nothing",
			cands: []Candidate{mk("a", 0, state(fleet.Cordoned)), mk("b", 0, state(fleet.Disabled)), mk("c", 50)}, want: "c"},
		{name: "only cordoned", cands: []Candidate{mk("a", 0, state(fleet.Cordoned))}, err: ErrNoNode},
		{name: "unknown state is not enabled", cands: []Candidate{mk("a", 0, state("")), mk("b", 9)}, want: "b"},
		{name: "offline gets nothing", cands: []Candidate{mk("a", 0, offline), mk("b", 50)}, want: "b"},
		{name: "only offline", cands: []Candidate{mk("a", 0, offline)}, err: ErrNoNode},
		{name: "turn role gets nothing", cands: []Candidate{mk("a", 0, role(fleet.RoleTURN)), mk("b", 50)}, want: "b"},
		{name: "empty role gets nothing", cands: []Candidate{mk("a", 0, role("")), mk("b", 50)}, want: "b"},

		{name: "over ceiling skipped while one is under",
			cands: []Candidate{mk("a", 0, cpu(90)), mk("b", 200, cpu(50))}, want: "b"},
		{name: "at the ceiling is not over",
			cands: []Candidate{mk("a", 0, cpu(85)), mk("b", 200, cpu(50))}, want: "a"},
		{name: "all over: least loaded, flagged",
			cands: []Candidate{mk("a", 10, cpu(90)), mk("b", 0, cpu(95)), mk("c", 0, cpu(10), state(fleet.Cordoned))},
			want:  "b", over: true},
		{name: "ceiling disabled", policy: noCeiling,
			cands: []Candidate{mk("a", 0, cpu(99)), mk("b", 200, cpu(10))}, want: "a"},
		{name: "custom ceiling", policy: func(p *Policy) { p.CPUCeiling = 50 },
			cands: []Candidate{mk("a", 0, cpu(60)), mk("b", 200, cpu(40))}, want: "b"},

		{name: "unhealthy skipped while one is healthy",
			cands: []Candidate{mk("a", 0, unhealthy), mk("b", 300)}, want: "b"},
		{name: "all unhealthy: least loaded, flagged",
			cands: []Candidate{mk("a", 20, unhealthy), mk("b", 10, unhealthy)}, want: "b", sick: true},
		{name: "health before ceiling",
			cands: []Candidate{mk("a", 0, unhealthy, cpu(10)), mk("b", 0, cpu(95))}, want: "b", over: true},
		{name: "all unhealthy, prefer under ceiling",
			cands: []Candidate{mk("a", 0, unhealthy, cpu(95)), mk("b", 100, unhealthy, cpu(10))}, want: "b", sick: true},

		{name: "tie: fewer reserved",
			cands: []Candidate{mk("a", 0, reserved(1)), mk("b", 11)}, want: "b"},
		{name: "tie: name", cands: []Candidate{mk("b", 5), mk("a", 5), mk("c", 5)}, want: "a"},
		{name: "negative reserved counts as zero",
			cands: []Candidate{mk("a", 0, reserved(-5)), mk("b", 0)}, want: "a"},
		{name: "multiplier weighs in",
			cands: []Candidate{mk("a", 100, multiplier(0.5)), mk("b", 60)}, want: "a"},
		{name: "reservation weighs in",
			cands: []Candidate{mk("a", 0, reserved(2)), mk("b", 20)}, want: "b"},
		{name: "reservation weight is configurable", policy: expect(1),
			cands: []Candidate{mk("a", 0, reserved(2)), mk("b", 20)}, want: "a"},
	})
}

func TestLoad(t *testing.T) {
	busy := fleet.Load{Participants: 10, Video: 3, Voice: 4, Meetings: 2, CPUPercent: 20, Listeners: 7, LargestMeeting: 9}
	// 10×1 + 3×2 + 4×0.5 + 2×1 + 20×1 = 40; listeners and the largest
	// meeting do not count. A reservation weighs 1 + 10×1 = 11.
	tests := []struct {
		name     string
		policy   func(*Policy)
		load     fleet.Load
		mult     float64
		reserved int
		want     float64
	}{
		{name: "empty", want: 0},
		{name: "figures", load: busy, want: 40},
		{name: "multiplier 0 means 1", load: busy, mult: 0, want: 40},
		{name: "negative multiplier means 1", load: busy, mult: -2, want: 40},
		{name: "multiplier 2", load: busy, mult: 2, want: 80},
		{name: "multiplier 0.5", load: busy, mult: 0.5, want: 20},
		{name: "one reservation on an empty node", reserved: 1, want: 11},
		{name: "reservations", load: busy, reserved: 2, want: 62},
		{name: "reservations times multiplier", load: busy, mult: 2, reserved: 2, want: 124},
		{name: "negative reservations", load: busy, reserved: -3, want: 40},
		{name: "expected participants", policy: expect(30), reserved: 1, want: 31},
		{name: "cpu weight", policy: func(p *Policy) { p.CPUWeight = 3 }, load: fleet.Load{CPUPercent: 20}, want: 60},
		{name: "video weight", policy: func(p *Policy) { p.VideoWeight = 5 }, load: fleet.Load{Video: 2}, want: 10},
		{name: "voice weight", policy: func(p *Policy) { p.VoiceWeight = 1 }, load: fleet.Load{Voice: 2}, want: 2},
		{name: "meeting weight", policy: func(p *Policy) { p.MeetingWeight = 4 }, load: fleet.Load{Meetings: 2}, reserved: 1, want: 22},
		{name: "participant weight", policy: func(p *Policy) { p.ParticipantWeight = 2 }, load: fleet.Load{Participants: 3}, reserved: 1, want: 27},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultPolicy()
			if tt.policy != nil {
				tt.policy(&p)
			}
			n := records.Node{Load: tt.load, LoadMultiplier: tt.mult}
			if got := p.Load(n, tt.reserved); got != tt.want {
				t.Fatalf("Load = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPickDecisionLoad(t *testing.T) {
	p := DefaultPolicy()
	cands := []Candidate{mk("a", 10, reserved(1), multiplier(2))}
	d, err := p.Pick(cands, TagRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if want := p.Load(cands[0].Node, 1); d.Load != want || d.Load != 42 {
		t.Fatalf("Decision.Load = %v, want %v (= 42)", d.Load, want)
	}
}

// TestBurstSpreads: creates with no report in between, each recorded as a
// reservation, spread evenly over equally loaded nodes.
func TestBurstSpreads(t *testing.T) {
	for _, nodes := range []int{3, 10} {
		t.Run(fmt.Sprint(nodes, " nodes"), func(t *testing.T) {
			p := DefaultPolicy()
			cands := make([]Candidate, nodes)
			for i := range cands {
				cands[i] = mk(fmt.Sprintf("bbb%02d", i), 50, cpu(30), func(c *Candidate) {
					c.Node.Load.Video, c.Node.Load.Voice, c.Node.Load.Meetings = 5, 20, 3
				})
			}
			placed := burst(t, p, cands, 100)
			most := 0
			for _, n := range placed {
				most = max(most, n)
			}
			mean := 100 / float64(nodes)
			if r := float64(most) / mean; r > 1.2 {
				t.Fatalf("max/mean meetings = %.2f > 1.2: %v", r, placed)
			}
		})
	}
}

// TestBurstUnequal: a node with 200 participants gets no meeting of a burst
// until the empty nodes' reservations have brought them up to its load.
func TestBurstUnequal(t *testing.T) {
	p := DefaultPolicy()
	cands := []Candidate{mk("busy", 200), mk("empty1", 0), mk("empty2", 0)}
	busyLoad := p.Load(cands[0].Node, 0)
	for i := range 100 {
		d, err := p.Pick(cands, TagRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Node.Name == "busy" {
			for _, c := range cands[1:] {
				if l := p.Load(c.Node, c.Reserved); l < busyLoad {
					t.Fatalf("pick %d went to busy (load %v) while %s had load %v", i, busyLoad, c.Node.Name, l)
				}
			}
			t.Logf("busy got its first meeting at pick %d", i)
			return
		}
		for j := range cands {
			if cands[j].Node.Name == d.Node.Name {
				cands[j].Reserved++
			}
		}
	}
	t.Fatal("busy never got a meeting in 100 picks")
}

// burst makes n picks, each recorded as a reservation on the chosen node, and
// returns the placements per candidate.
func burst(t *testing.T, p Policy, cands []Candidate, n int) []int {
	t.Helper()
	placed := make([]int, len(cands))
	for range n {
		d, err := p.Pick(cands, TagRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for j := range cands {
			if cands[j].Node.Name == d.Node.Name {
				cands[j].Reserved++
				placed[j]++
			}
		}
	}
	return placed
}

func TestPickAllocatesNothing(t *testing.T) {
	p := DefaultPolicy()
	cands := benchCandidates(1000)
	req := ParseServerTag("t3;none")
	if a := testing.AllocsPerRun(100, func() {
		if _, err := p.Pick(cands, req); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("Pick allocates %v times per call", a)
	}
}

// benchCandidates is a fleet of n nodes with assorted states, tags and loads.
func benchCandidates(n int) []Candidate {
	cands := make([]Candidate, n)
	for i := range cands {
		c := mk(fmt.Sprintf("bbb%05d", i), (i*7919)%300, cpu(float64((i*31)%100)))
		c.Node.Load.Video = (i * 13) % 40
		c.Node.Load.Voice = (i * 17) % 100
		c.Node.Load.Meetings = (i * 3) % 20
		c.Reserved = i % 3
		switch i % 10 {
		case 0:
			c.Node.State = fleet.Cordoned
		case 1:
			c.Online = false
		case 2:
			c.Node.Tags = []string{fmt.Sprint("t", i%7)}
		case 3:
			c.Node.Tags = []string{"gpu", fmt.Sprint("t", i%5)}
		case 4:
			c.Node.Load.BBBHealthy = false
		}
		cands[i] = c
	}
	return cands
}

func BenchmarkPick(b *testing.B) {
	p := DefaultPolicy()
	cands := benchCandidates(10000)
	for _, bc := range []struct {
		name string
		req  TagRequest
	}{
		{"untagged", TagRequest{}},
		{"optional tags", ParseServerTag("t3;t9;none")},
		{"required tag", ParseServerTag("gpu!")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Pick(cands, bc.req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
