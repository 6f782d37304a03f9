package balancer

import (
	"context"
	"errors"
	"maps"
	"sync"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/balancer/records"
	"github.com/bbb-agent/bbb-agent/balancer/store"
)

// leavingNodes are the nodes whose agents say they are leaving
// (agentapi.ReportRequest.Leaving): their drain passed its deadline with
// meetings still running, so they stay registered and cordoned only for
// those meetings' sake while their host may go away at any moment. Each
// replica learns it from the reports it receives; every report of a leaving
// node says it again, so a restarted replica knows within one interval.
type leavingNodes struct {
	mu  sync.Mutex
	ids map[string]string // node ID -> node name
}

// note records whether the node is leaving and says whether it just started.
func (l *leavingNodes) note(n records.Node, leaving bool) (started bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, known := l.ids[n.ID]
	switch {
	case leaving && !known:
		if l.ids == nil {
			l.ids = map[string]string{}
		}
		l.ids[n.ID] = n.Name
		return true
	case !leaving && known:
		delete(l.ids, n.ID)
	}
	return false
}

// stays notes that the node reported without leaving: it is not leaving
// (any more), as note says for it.
func (l *leavingNodes) stays(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.ids, id)
}

func (l *leavingNodes) forget(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.ids, id)
}

func (l *leavingNodes) snapshot() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.ids)
}

// leavingReport applies a report's Leaving: a leaving node that reports no
// meetings, with its BBB answering, is removed at once (its agent
// deregisters too, but its host may be gone before it can). It says whether
// the node was removed.
func (s *Server) leavingReport(ctx context.Context, n records.Node, req agentapi.ReportRequest) bool {
	if s.leaving.note(n, req.Leaving) {
		s.log.Info("node is leaving: its drain passed the deadline with meetings running; it stays cordoned and its meetings joinable "+
			"until it reports none or goes offline, then it is removed", "node", n.Name, "meetings", req.Load.Meetings)
	}
	if !req.Leaving || !req.Load.BBBHealthy || req.Load.Meetings > 0 {
		return false
	}
	return s.removeLeaving(ctx, n, "it reports no meetings left")
}

// sweepLeaving removes the leaving nodes that went offline (missed
// reports): their host is gone, and with it their meetings. It runs after
// every registry refresh that reached the database.
func (s *Server) sweepLeaving(ctx context.Context) {
	for id, name := range s.leaving.snapshot() {
		n, online, ok := s.reg.node(id)
		switch {
		case !ok:
			s.leaving.forget(id) // deregistered, or removed by an operator or another replica
		case !online:
			s.log.Debug("leaving node offline", "node", name)
			s.removeLeaving(ctx, n, "it went offline (missed reports): its host is gone")
		}
	}
}

// removeLeaving removes a leaving node, as its agent's deregistration would.
func (s *Server) removeLeaving(ctx context.Context, n records.Node, why string) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.store.DeleteNode(ctx, n.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Warn("removing a leaving node (tried again at the next refresh)", "node", n.Name, "why", why, "err", err)
		return false
	}
	s.reg.remove(n.ID)
	s.leaving.forget(n.ID)
	s.log.Info("leaving node removed", "node", n.Name, "why", why)
	return true
}
