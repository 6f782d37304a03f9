package placement

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/bbb-agent/bbb-agent/fleet"
)

// A simulated school day, 07:00 to 20:00, one step per second: 20 equal
// nodes; creates arrive in bursts around each full hour from 08:00 to 17:00
// (classes, seminars, a few lectures, small meetings) and a trickle of small
// meetings all day; participants join over the first two minutes of a
// meeting; every node reports its real figures every 5 s, staggered.
const (
	dayNodes    = 20
	daySeconds  = 13 * 3600
	dayReport   = 5   // seconds between two reports of a node
	dayJoinRamp = 120 // seconds over which a meeting's participants join
	// dayBusy: seconds count toward the p99 while the fleet holds at least
	// this share of its peak; in a nearly empty fleet one large meeting
	// makes any placement look uneven.
	dayBusy = 0.5
)

type dayMeeting struct {
	start, end         int // seconds since 07:00
	size, video, voice int // at full attendance
	node               int
}

// present is how many of m's participants, video streams and voice users are
// in at second t, while m runs.
func (m *dayMeeting) present(t int) (participants, video, voice int) {
	p := m.size
	if k := t - m.start; k < dayJoinRamp {
		p = 1 + (m.size-1)*k/dayJoinRamp
	}
	return p, m.video * p / m.size, m.voice * p / m.size
}

// addFull adds m at full attendance to l.
func (m *dayMeeting) addFull(l *fleet.Load) {
	l.Participants += m.size
	l.Video += m.video
	l.Voice += m.voice
	l.Meetings++
}

// dayMeetings draws the day's meetings, sorted by start.
func dayMeetings(rng *rand.Rand) []dayMeeting {
	var ms []dayMeeting
	small := func(start int) dayMeeting {
		n := 2 + rng.IntN(7)
		return dayMeeting{start: start, end: start + 60*(15+rng.IntN(46)), size: n, video: n, voice: n}
	}
	for h := 8; h <= 17; h++ {
		n := 30 + rng.IntN(60)
		if h == 12 {
			n /= 3
		}
		hour := (h - 7) * 3600
		for range n {
			// Most creates fall in the two minutes before and the three
			// after the full hour; a few come late.
			start := hour - 120 + int(rng.ExpFloat64()*90)
			var m dayMeeting
			switch r := rng.Float64(); {
			case r < 0.55: // class
				size := 15 + rng.IntN(21)
				m = dayMeeting{size: size, video: 1 + rng.IntN(3), voice: size / 2, end: 60 * (40 + rng.IntN(16))}
			case r < 0.80:
				m = small(0) // duration in end, like the others
			case r < 0.97: // seminar
				size := 40 + rng.IntN(61)
				m = dayMeeting{size: size, video: 2 + rng.IntN(4), voice: size * 3 / 10, end: 60 * (60 + rng.IntN(31))}
			default: // lecture
				size := 150 + rng.IntN(151)
				m = dayMeeting{size: size, video: 1 + rng.IntN(2), voice: size / 10, end: 60 * (60 + rng.IntN(31))}
			}
			m.start = start
			m.end += start
			ms = append(ms, m)
		}
	}
	for t := range daySeconds - 3600 {
		if rng.IntN(100) == 0 {
			ms = append(ms, small(t))
		}
	}
	slices.SortStableFunc(ms, func(a, b dayMeeting) int { return a.start - b.start })
	return ms
}

type dayResult struct {
	peakRatio    float64   // max/mean participants per node when the fleet was fullest
	peakMean     float64   // mean participants per node then
	peakMeetings float64   // max/mean meetings per node then
	busyRatios   []float64 // max/mean participants per node, each busy second
	meetings     int
}

// reservations is how the simulated balancer fills Candidate.Reserved.
type reservations int

const (
	// resetOnReport counts placements since the node's last report.
	resetOnReport reservations = iota
	// noReservations never counts them.
	noReservations
	// holdForJoins counts a placement until its meeting is dayJoinRamp
	// old, whatever the reports say: a report sent while participants are
	// still joining shows the meeting far smaller than it will be.
	holdForJoins
	// oracle is no balancer: every node's figures are those of its meetings
	// at full attendance, known from the create on, no reports needed. It
	// shows how much of the imbalance the meeting sizes alone cause.
	oracle
)

// simulateDay runs the day with DefaultPolicy.
func simulateDay(seed uint64, mode reservations) dayResult {
	rng := rand.New(rand.NewPCG(seed, 1))
	ms := dayMeetings(rng)
	p := DefaultPolicy()
	cands := make([]Candidate, dayNodes)
	index := make(map[string]int, dayNodes)
	for i := range cands {
		cands[i] = mk(fmt.Sprintf("bbb%02d", i), 0)
		index[cands[i].Node.Name] = i
	}
	var (
		part, video, voice, meets [dayNodes]int
		active                    []*dayMeeting
		samples                   []sample
		res                       = dayResult{meetings: len(ms)}
		peakTotal                 int
		next                      int
	)
	for t := range daySeconds {
		// The truth on the nodes at second t.
		part, video, voice, meets = [dayNodes]int{}, [dayNodes]int{}, [dayNodes]int{}, [dayNodes]int{}
		active = slices.DeleteFunc(active, func(m *dayMeeting) bool { return t >= m.end })
		if mode == holdForJoins {
			for i := range cands {
				cands[i].Reserved = 0
			}
		}
		if mode == oracle {
			for i := range cands {
				cands[i].Node.Load = fleet.Load{BBBHealthy: true}
			}
		}
		for _, m := range active {
			pp, v, a := m.present(t)
			part[m.node] += pp
			video[m.node] += v
			voice[m.node] += a
			meets[m.node]++
			switch {
			case mode == holdForJoins && t-m.start < dayJoinRamp:
				cands[m.node].Reserved++
			case mode == oracle:
				m.addFull(&cands[m.node].Node.Load)
			}
		}
		// Reports due at t, staggered over the interval.
		for i := range cands {
			if mode == oracle || t%dayReport != i%dayReport {
				continue
			}
			l := &cands[i].Node.Load
			l.Participants, l.Video, l.Voice, l.Meetings = part[i], video[i], voice[i], meets[i]
			cpu := 0.12*float64(part[i]) + 0.6*float64(video[i]) + 0.05*float64(voice[i]) + 0.5*float64(meets[i])
			l.CPUPercent = min(100, max(0, cpu+4*rng.Float64()-2))
			if mode == resetOnReport {
				cands[i].Reserved = 0
			}
		}
		// Creates at t.
		for ; next < len(ms) && ms[next].start <= t; next++ {
			d, err := p.Pick(cands, TagRequest{})
			if err != nil {
				panic(err)
			}
			i := index[d.Node.Name]
			ms[next].node = i
			active = append(active, &ms[next])
			switch mode {
			case resetOnReport, holdForJoins:
				cands[i].Reserved++
			case oracle:
				ms[next].addFull(&cands[i].Node.Load)
			}
		}
		total, most, mostMeetings, totalMeetings := 0, 0, 0, 0
		for i := range part {
			total += part[i]
			most = max(most, part[i])
			totalMeetings += meets[i]
			mostMeetings = max(mostMeetings, meets[i])
		}
		if total == 0 {
			continue
		}
		mean := float64(total) / dayNodes
		samples = append(samples, sample{total, float64(most) / mean})
		if total > peakTotal {
			peakTotal = total
			res.peakRatio, res.peakMean = float64(most)/mean, mean
			res.peakMeetings = float64(mostMeetings) / (float64(totalMeetings) / dayNodes)
		}
	}
	for _, s := range samples {
		if float64(s.total) >= dayBusy*float64(peakTotal) {
			res.busyRatios = append(res.busyRatios, s.ratio)
		}
	}
	return res
}

// sample is one second of the day: participants in the fleet, and max/mean
// participants per node.
type sample struct {
	total int
	ratio float64
}

// days sums up simulated days: means of the per-day figures, and the p99 of
// the busy seconds of all days together.
type days struct {
	n, meetings                       int
	peakRatio, peakMean, peakMeetings float64
	busy                              []float64
}

func (d *days) add(r dayResult) {
	d.n++
	d.meetings += r.meetings
	d.peakRatio += r.peakRatio
	d.peakMean += r.peakMean
	d.peakMeetings += r.peakMeetings
	d.busy = append(d.busy, r.busyRatios...)
}

func (d *days) p99() float64 {
	slices.Sort(d.busy)
	return d.busy[len(d.busy)*99/100]
}

// BenchmarkBurstyDay reports how evenly simulated bursty days (dayRuns
// seeds) spread over the fleet: with reservations reset at each report
// (what the balancer does); for comparison, without reservations, with
// reservations held while participants join, and an oracle that knows every
// meeting's final size from its create. peak-* are at the second
// the fleet was fullest, averaged over the days; p99-* runs over the seconds
// it was at least half as full, and reflects mostly meetings ending at
// random times, which no placement undoes.
func BenchmarkBurstyDay(b *testing.B) {
	const dayRuns = 5
	var reset, none, hold, best days
	for b.Loop() {
		reset, none, hold, best = days{}, days{}, days{}, days{}
		for seed := range uint64(dayRuns) {
			reset.add(simulateDay(seed, resetOnReport))
			none.add(simulateDay(seed, noReservations))
			hold.add(simulateDay(seed, holdForJoins))
			best.add(simulateDay(seed, oracle))
		}
	}
	n := float64(dayRuns)
	b.ReportMetric(float64(reset.meetings)/n, "meetings/day")
	b.ReportMetric(reset.peakMean/n, "peak-participants/node")
	b.ReportMetric(reset.peakRatio/n, "peak-max/mean")
	b.ReportMetric(reset.peakMeetings/n, "peak-meetings-max/mean")
	b.ReportMetric(reset.p99(), "p99-max/mean")
	b.ReportMetric(none.peakRatio/n, "noreserve-peak-max/mean")
	b.ReportMetric(none.p99(), "noreserve-p99-max/mean")
	b.ReportMetric(hold.peakRatio/n, "hold-peak-max/mean")
	b.ReportMetric(hold.p99(), "hold-p99-max/mean")
	b.ReportMetric(best.peakRatio/n, "oracle-peak-max/mean")
	b.ReportMetric(best.p99(), "oracle-p99-max/mean")
}
