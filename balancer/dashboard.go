package balancer

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/balancer/placement"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/balancer/web"
	"github.com/bbb-agent/bbb-agent/fleet"
)

// The dashboard keeps, in memory and per replica, one load sample per node
// every sampleEvery for historyLen samples (an hour), and the last
// maxEvents events.
const (
	sampleEvery   = 10 * time.Second
	historyLen    = 360
	historyPoints = 36 // drawn: each point averages historyLen/historyPoints samples
	maxEvents     = 200
	// meetingsMaxAge is how old the meetings list may get while someone
	// looks at the page; it is listed from the nodes only then.
	meetingsMaxAge = 5 * time.Second
	viewIdle       = 2 * time.Minute
	// meetingsShown is how many meetings the page lists, the largest
	// first.
	meetingsShown = 200
)

// dashboard is what the web pages see of the replica (web.Fleet).
type dashboard struct {
	s *Server

	mu sync.Mutex
	// nodes are the nodes of the last observation, by node ID; obs counts
	// the observations (a node not seen by the latest left the fleet).
	nodes  map[string]*nodeHist
	obs    uint64
	events []web.Event // ring of maxEvents, next at evNext
	evNext int
	// observed: the first observation (the fleet at start) is done; nodes
	// seen after it joined.
	observed bool

	mmu           sync.Mutex
	meetings      []web.Meeting
	meetingsTotal int
	meetingsAt    time.Time
	listing       atomic.Bool
	lastView      atomic.Int64 // Unix ns
}

// loadRing holds a node's load history as the means it is drawn with:
// historyPoints buckets of historyLen/historyPoints samples each, the newest
// filling. (Every sample kept cost 1.4 KB a node, 14 MB for 10,000 nodes.)
type loadRing struct {
	sums    [historyPoints]float32
	counts  [historyPoints]uint8
	buckets int32 // buckets held
	cur     int32 // the bucket being filled
	n       int32 // samples held
}

func (r *loadRing) add(v float64) {
	if r.buckets == 0 || int(r.counts[r.cur]) == historyLen/historyPoints {
		if r.buckets > 0 {
			r.cur = (r.cur + 1) % historyPoints
		}
		if r.buckets == historyPoints {
			r.n -= int32(r.counts[r.cur]) // the oldest bucket falls out
		}
		r.sums[r.cur], r.counts[r.cur] = 0, 0
		r.buckets = min(r.buckets+1, historyPoints)
	}
	r.sums[r.cur] += float32(v)
	r.counts[r.cur]++
	r.n++
}

// points are the held buckets' means, oldest first.
func (r *loadRing) points() []float64 {
	if r.buckets == 0 {
		return nil
	}
	out := make([]float64, 0, r.buckets)
	for i := r.buckets - 1; i >= 0; i-- {
		b := (r.cur - i + historyPoints) % historyPoints
		out = append(out, float64(r.sums[b])/float64(r.counts[b]))
	}
	return out
}

// nodeHist is what the dashboard keeps of a node: what its events are
// derived from, its load history, and the observation that last saw it.
type nodeHist struct {
	sig  nodeSig
	ring loadRing
	seen uint64
}

// nodeSig is what events are derived from.
type nodeSig struct {
	name     string
	state    fleet.AdminState
	online   bool
	meetings int
}

// mountDashboard serves the fleet page, the room links and the rooms admin
// API on mux.
func (s *Server) mountDashboard(mux *http.ServeMux) error {
	var users map[string]web.User
	if s.cfg.DashboardUsers != "" {
		u, err := web.ReadUsers(s.cfg.DashboardUsers)
		if err != nil {
			return err
		}
		users = u
	}
	d := &dashboard{s: s, nodes: map[string]*nodeHist{}}
	h := web.New(web.Options{Fleet: d, Rooms: roomLinks{s}, AdminToken: s.cfg.AdminToken, Users: users,
		Dashboard: !s.cfg.DisableDashboard, MaxMeetingsShown: meetingsShown, Clock: s.cfg.Clock, Logger: s.log,
		AfterRender: s.collector.after})
	mux.Handle("/rooms/", h)
	mux.Handle("GET /dashboard/static/", h) // the room pages' style sheet too
	mux.Handle("/admin/v1/rooms", s.roomsAdminHandler())
	mux.Handle("/admin/v1/rooms/", s.roomsAdminHandler())
	if s.cfg.DisableDashboard {
		return nil
	}
	mux.Handle("/dashboard/", h)
	mux.Handle("GET /dashboard", http.RedirectHandler("/dashboard/", http.StatusMovedPermanently))
	d.observe(d.fleetNow(), true)
	// Run samples the fleet every sampleEvery from then on, also while
	// nobody looks: the chart must cover the hour before the page opened.
	s.dash = d
	return nil
}

// sampleUntil samples the fleet every sampleEvery until ctx ends (Run).
func (d *dashboard) sampleUntil(ctx context.Context) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.observe(d.fleetNow(), true)
		}
	}
}

// observed is what the dashboard takes of a node at each observation, and
// of every node for a view of the page (Snapshot): about 90 bytes.
type observed struct {
	id   string
	sig  nodeSig
	load float64 // the placement load, reservations included
	// largest is the largest meeting of its last report (nodesToList).
	largest int
	turn    bool
	healthy bool // no reason given (entry.reason)
	hasURL  bool // its BBB API can be asked
}

func newObserved(n *records.Node, online bool, reserved int, reason string, p placement.Policy) observed {
	return observed{id: n.ID, sig: nodeSig{name: n.Name, state: n.State, online: online, meetings: n.Load.Meetings},
		load: p.Load(*n, reserved), largest: n.Load.LargestMeeting, turn: n.Role == fleet.RoleTURN, healthy: reason == "", hasURL: n.URL != ""}
}

// fleetNow is the fleet as observe takes it: a sample of 10,000 nodes
// copies under 100 bytes of each, not its whole nodeView.
func (d *dashboard) fleetNow() []observed {
	out := make([]observed, 0, d.s.reg.size())
	d.s.reg.visit(func(n *records.Node, online bool, reserved int, reason string) {
		out = append(out, newObserved(n, online, reserved, reason, d.s.cfg.Policy))
	})
	return out
}

// observe diffs the fleet against the last observation into events, and
// with record adds a load sample per node.
func (d *dashboard) observe(nodes []observed, record bool) {
	now := d.s.cfg.Clock()
	d.mu.Lock()
	defer d.mu.Unlock()
	first := !d.observed
	d.observed = true
	d.obs++
	for _, n := range nodes {
		sig := n.sig
		h := d.nodes[n.id]
		switch {
		case h == nil && !first:
			d.event(now, fmt.Sprintf("%s joined the fleet (%s, %s)", sig.name, sig.state, liveness(sig.online)))
		case h == nil:
		default:
			old := h.sig
			if old.state != sig.state {
				d.event(now, fmt.Sprintf("%s is now %s", sig.name, sig.state))
			}
			if old.online != sig.online {
				d.event(now, fmt.Sprintf("%s went %s", sig.name, liveness(sig.online)))
			}
			if sig.state == fleet.Cordoned && old.meetings > 0 && sig.meetings == 0 {
				d.event(now, fmt.Sprintf("%s drained: no meetings left", sig.name))
			}
		}
		if h == nil {
			h = &nodeHist{}
			d.nodes[n.id] = h
		}
		h.sig, h.seen = sig, d.obs
		if record {
			h.ring.add(n.load)
		}
	}
	for id, h := range d.nodes {
		if h.seen != d.obs {
			d.event(now, fmt.Sprintf("%s left the fleet", h.sig.name))
			delete(d.nodes, id)
		}
	}
}

func liveness(online bool) fleet.Liveness {
	if online {
		return fleet.Online
	}
	return fleet.Offline
}

// event appends to the ring; d.mu held.
func (d *dashboard) event(at time.Time, text string) {
	e := web.Event{At: at, Text: text}
	if len(d.events) < maxEvents {
		d.events = append(d.events, e)
		return
	}
	d.events[d.evNext] = e
	d.evNext = (d.evNext + 1) % maxEvents
}

func (d *dashboard) addEvent(text string) {
	d.mu.Lock()
	d.event(d.s.cfg.Clock(), text)
	d.mu.Unlock()
}

// Snapshot implements web.Fleet. Of every node it takes what observe
// takes; it copies the whole view (records.Node) of the nodes it returns
// only: a page of 1,000 nodes of a fleet of 10,000 is not a copy of
// 10,000 nodes, 5 MB, every few seconds. No secret leaves here: web.Node
// has no field for one.
func (d *dashboard) Snapshot(maxBBB int) web.Snapshot {
	now := d.s.cfg.Clock()
	d.lastView.Store(time.Now().UnixNano())
	obs := d.fleetNow()
	d.observe(obs, false)
	out := web.Snapshot{At: now}
	var turn, bbb []int // indexes in obs
	for i := range obs {
		o := &obs[i]
		if o.sig.online {
			out.Counts.Online++
		} else {
			out.Counts.Offline++
		}
		if o.turn {
			turn = append(turn, i)
		} else {
			bbb = append(bbb, i)
		}
	}
	out.Counts.TURN, out.Counts.BBB = len(turn), len(bbb)
	if maxBBB > 0 && len(bbb) > maxBBB {
		rank := func(o *observed) int { return web.AttentionRank(o.sig.online, o.healthy, string(o.sig.state)) }
		slices.SortFunc(bbb, func(a, b int) int {
			x, y := &obs[a], &obs[b]
			return web.AttentionOrder(rank(x), x.load, x.sig.name, rank(y), y.load, y.sig.name)
		})
		bbb = bbb[:maxBBB]
	}
	ids := make([]string, 0, len(turn)+len(bbb))
	for _, i := range slices.Concat(turn, bbb) {
		ids = append(ids, obs[i].id)
	}
	nodes := d.s.reg.views(ids) // by name; a node removed meanwhile is not there
	out.Nodes = make([]web.Node, 0, len(nodes))
	d.mu.Lock()
	for _, n := range nodes {
		v := web.Node{ID: n.ID, Name: n.Name, Role: string(n.Role), State: string(n.State), Liveness: string(liveness(n.Online)),
			Meetings: n.Load.Meetings, Participants: n.Load.Participants, Video: n.Load.Video, CPUPercent: n.Load.CPUPercent,
			Load: d.s.cfg.Policy.Load(n.Node, n.Reserved), BBBVersion: n.Load.BBBVersion, AgentVersion: n.AgentVersion,
			LastReportAge: -1, TURNHealthy: n.Load.TURNHealthy, TURNURIs: n.TURNURIs, Reason: n.Reason}
		if !n.LastReportAt.IsZero() {
			v.LastReportAge = max(now.Sub(n.LastReportAt), 0)
		}
		if h := d.nodes[n.ID]; h != nil {
			v.History = h.ring.points()
		}
		v.History = append(v.History, v.Load) // and now
		out.Nodes = append(out.Nodes, v)
	}
	// Newest event first.
	out.Events = make([]web.Event, 0, min(len(d.events), 50))
	for i := 0; i < len(d.events) && i < 50; i++ {
		j := ((d.evNext-1-i)%len(d.events) + len(d.events)) % len(d.events)
		out.Events = append(out.Events, d.events[j])
	}
	d.mu.Unlock()
	d.mmu.Lock()
	out.Meetings, out.MeetingsTotal, out.MeetingsAt = d.meetings, d.meetingsTotal, d.meetingsAt
	stale := time.Since(d.meetingsAt) > meetingsMaxAge
	d.mmu.Unlock()
	if stale && d.listing.CompareAndSwap(false, true) {
		ask, unasked := nodesToList(obs, meetingsShown)
		d.s.bg.Go(func() {
			defer d.listing.Store(false)
			d.listMeetings(ask, unasked)
		})
	}
	return out
}

// listMeetings asks the online BBB nodes that hold the largest meetings,
// ask (their IDs, nodesToList), for their meetings, a few at a time, and
// keeps them sorted by participants (the page shows the largest); unasked
// counts the meetings of the others.
func (d *dashboard) listMeetings(ask []string, unasked int) {
	var (
		mu  sync.Mutex
		all []web.Meeting
		wg  sync.WaitGroup
		sem = make(chan struct{}, 32)
	)
	for _, n := range d.s.reg.views(ask) {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), d.s.cfg.GetMeetingsTimeout)
			defer cancel()
			ms, err := d.s.nodeMeetings(ctx, n.Node, d.s.cfg.GetMeetingsTimeout)
			if err != nil {
				d.s.log.Debug("dashboard: listing a node's meetings", "node", n.Name, "err", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, m := range ms {
				if m.HasBeenForciblyEnded || m.EndTime > 0 && !m.Running {
					continue
				}
				all = append(all, web.Meeting{ID: m.MeetingID, Name: m.MeetingName, Node: n.Name,
					Participants: m.ParticipantCount, Since: time.UnixMilli(m.CreateTime)})
			}
		}()
	}
	wg.Wait()
	slices.SortFunc(all, func(a, b web.Meeting) int {
		return cmp.Or(cmp.Compare(b.Participants, a.Participants), cmp.Compare(a.ID, b.ID))
	})
	d.mmu.Lock()
	d.meetings, d.meetingsTotal, d.meetingsAt = all, len(all)+unasked, time.Now()
	d.mmu.Unlock()
}

// nodesToList picks the nodes whose meetings the page's list of the shown
// largest meetings needs: the online BBB nodes, or, of a fleet with more
// of them, the shown nodes with the largest meetings by their last report
// (fleet.Load.LargestMeeting). Any meeting elsewhere is no larger than the
// largest meeting of each of those, so the list is the same as from every
// node, but a 10,000-node fleet is not asked 10,000 times every
// meetingsMaxAge. unasked sums the meetings the others reported.
func nodesToList(nodes []observed, shown int) (ask []string, unasked int) {
	var online []*observed
	for i := range nodes {
		if n := &nodes[i]; n.sig.online && !n.turn && n.hasURL {
			online = append(online, n)
		}
	}
	if len(online) > shown {
		slices.SortStableFunc(online, func(a, b *observed) int { return cmp.Compare(b.largest, a.largest) })
		for _, n := range online[shown:] {
			unasked += n.sig.meetings
		}
		online = online[:shown]
	}
	ask = make([]string, len(online))
	for i, n := range online {
		ask[i] = n.id
	}
	return ask, unasked
}

// SetState goes through the admin API's own handler, in process, so the
// page and the CLI change a node the same way.
func (d *dashboard) SetState(ctx context.Context, who, node, state string) error {
	body, _ := json.Marshal(adminapi.SetStateRequest{State: fleet.AdminState(state)})
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, adminapi.PathServer+url.PathEscape(node)+"/state", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+d.s.cfg.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	d.s.handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		var e adminapi.Error
		_ = json.Unmarshal(rec.Body.Bytes(), &e)
		return fmt.Errorf("%s", cmp.Or(e.Error, http.StatusText(rec.Code)))
	}
	var v adminapi.Server
	_ = json.Unmarshal(rec.Body.Bytes(), &v)
	d.s.log.Info("dashboard: node state set", "user", who, "node", v.Name, "state", state)
	d.addEvent(fmt.Sprintf("%s set to %s by %s", v.Name, state, who))
	return nil
}

// CreateRoom implements web.Fleet.
func (d *dashboard) CreateRoom(ctx context.Context, who string, req web.RoomRequest, base string) (web.RoomLinks, error) {
	links, err := d.s.createRoom(ctx, req, base)
	if err != nil {
		return web.RoomLinks{}, err
	}
	d.s.log.Info("dashboard: room created", "user", who, "room", links.Name, "id", links.ID)
	d.addEvent(fmt.Sprintf("room %q created by %s", links.Name, who))
	return links, nil
}
