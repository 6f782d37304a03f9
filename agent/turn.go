package agent

import (
	"context"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/turn"
)

// turnSyncTimeout bounds one TURN sync (probes, file, bbb-web restart). The
// sync runs beside the report loop, so this bounds only how stale the TURN
// status can get, never a report.
const turnSyncTimeout = 2 * time.Minute

// turnJob is what one report hands the TURN sync: the servers the balancer
// offers and the node's meeting count.
type turnJob struct {
	servers  []agentapi.TURNServer
	meetings int
}

// offerTURN hands the TURN sync the latest report's figures without
// waiting: a sync under way finishes with the figures it has, and the next
// one takes the newest offer (an older one not taken yet is dropped). Only
// the loop calls it.
func (a *Agent) offerTURN(job turnJob) {
	select {
	case <-a.turnJobs:
	default:
	}
	a.turnJobs <- job
}

// runTURN keeps a BBB node's turn-stun-servers.xml pointed at the live TURN
// servers, beside the report loop: probes of dead servers, DNS discovery and
// the bbb-web restart take as long as they take without delaying a report.
// Each result lands in the status.
func (a *Agent) runTURN(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case job := <-a.turnJobs:
			a.syncTURN(ctx, job)
		}
	}
}

// syncTURN points BBB at the live TURN servers: the balancer's list, or DNS
// when the balancer names none.
func (a *Agent) syncTURN(ctx context.Context, job turnJob) {
	ctx, cancel := context.WithTimeout(ctx, turnSyncTimeout)
	defer cancel()
	var offered []string
	for _, s := range job.servers {
		offered = append(offered, s.URIs...)
	}
	if len(offered) == 0 && a.deps.TURNDiscovery != nil {
		found, err := a.deps.TURNDiscovery(ctx)
		if err != nil {
			a.log.Warn("finding TURN servers in DNS", "err", err)
		}
		offered = found
	}
	a.setTURNStatus(a.deps.TURN.Sync(ctx, offered, job.meetings, a.setTURNStatus))
}

// setTURNStatus publishes the TURN sync's status.
func (a *Agent) setTURNStatus(st turn.Status) {
	a.mu.Lock()
	a.status.TURN = &st
	a.mu.Unlock()
}
