package balancer

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/store"
	"github.com/bbb-agent/bbb-agent/bbb"
)

// Server is one bbb-balancer replica.
type Server struct {
	cfg      Config
	store    *store.Store
	reg      *registry
	verifier bbb.Verifier
	nodeHTTP *http.Client
	metrics  *metrics
	// collector collects after a scrape, a dashboard render or a list of
	// every server.
	collector *transientCollector
	admin     http.Handler // Config.SeparateAdmin's handler
	log       *slog.Logger
	handler   http.Handler
	// ceilingWarn rate-limits the over-ceiling warning; legacyWarned holds
	// the names of nodes warned about using the agent token.
	ceilingWarn  ceilingWarning
	legacyWarned sync.Map
	bg           sync.WaitGroup
	rec          recordingsState
	// fleetMeetings serves getMeetings (getmeetings.go).
	fleetMeetings fleetMeetings
	// leaving are the nodes past their drain deadline (leaving.go).
	leaving leavingNodes
	// prunes are the placements waiting to be pruned (prune.go).
	prunes pruneQueue
	// reportAnswers are the kept answers to agents' reports (agent.go).
	reportAnswers reportAnswers
	// streams are the agents' open report streams (reportstream.go).
	streams *reportStreams
	// dash is the fleet page's state, nil with Config.DisableDashboard
	// (dashboard.go).
	dash *dashboard
}

// New builds a replica on an open store and loads the registry.
func New(ctx context.Context, cfg Config, st *store.Store) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		store:    st,
		verifier: bbb.Verifier{Secrets: cfg.Secrets, Allowed: cfg.Algorithms},
		log:      cfg.Logger,
		nodeHTTP: &http.Client{
			Transport: &http.Transport{
				Proxy:               http.ProxyFromEnvironment,
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:        1024,
				MaxIdleConnsPerHost: 64,
				IdleConnTimeout:     90 * time.Second,
				TLSHandshakeTimeout: 5 * time.Second,
			},
			// join with redirect=false must not follow; nothing else redirects.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	if err := s.initRecordings(ctx); err != nil {
		return nil, err
	}
	s.reg = newRegistry(st, &s.cfg)
	if err := s.reg.refresh(ctx); err != nil {
		return nil, err
	}
	s.collector = newTransientCollector()
	s.metrics = newMetrics(s.reg.metricsNodes, s.collector)
	s.registerRecordingMetrics()
	s.streams = newReportStreams(s.agentAuth(s.agentReport))
	s.registerStreamMetrics()
	mux := http.NewServeMux()
	mux.HandleFunc("/bigbluebutton/api", s.serveAPI)
	mux.HandleFunc("/bigbluebutton/api/", s.serveAPI)
	mux.Handle("/agent/v1/", s.agentHandler())
	if s.cfg.SeparateAdmin {
		// The admin listener (AdminHandler) alone serves them; the public
		// port carries the BBB API, the agent API, playback and the dashboard.
		admin := http.NewServeMux()
		admin.Handle("/admin/v1/", s.adminHandler())
		admin.Handle(scalelitePrefix, s.scaleliteHandler())
		admin.Handle("GET /metrics", s.metrics)
		admin.HandleFunc("GET /healthz", s.healthz)
		s.admin = s.withBodyTimeout(admin)
	} else {
		// On the public port /metrics needs the admin token, as Prometheus'
		// authorization: {credentials: TOKEN} sends it.
		mux.Handle("/admin/v1/", s.adminHandler())
		// Scalelite's server API (scalelite.go), signed with the BBB API secret.
		mux.Handle(scalelitePrefix, s.scaleliteHandler())
		mux.Handle("GET /metrics", s.requireToken(s.cfg.AdminToken, s.metrics, func(w http.ResponseWriter) {
			http.Error(w, "missing or wrong admin token: /metrics on the public port needs Authorization: Bearer <admin token> (or serve it on --admin-listen)", http.StatusUnauthorized)
		}))
	}
	mux.HandleFunc("GET /healthz", s.healthz)
	if err := s.mountDashboard(mux); err != nil { // the fleet page, room links (dashboard.go)
		return nil, err
	}
	s.handlePlayback(mux)
	s.handler = s.withBodyTimeout(s.withCleanAPIPaths(mux))
	return s, nil
}

// Handler is the replica's public HTTP handler: BBB API, agent API,
// playback, dashboard and /healthz; the admin API and /metrics (admin token)
// and Scalelite's server API too unless Config.SeparateAdmin puts them on AdminHandler.
func (s *Server) Handler() http.Handler { return s.handler }

// AdminHandler serves the admin API (admin token), Scalelite's server API
// (the BBB API secret), /metrics (no token: the
// admin listener is meant for loopback or a private network) and /healthz
// when Config.SeparateAdmin is set; nil otherwise.
func (s *Server) AdminHandler() http.Handler { return s.admin }

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		http.Error(w, "database unreachable: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if err := s.store.CheckWritable(ctx); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte("ok\n"))
}

// Run keeps the registry fresh, writes reports and polls operator-added
// nodes until ctx ends, then writes the last reports.
func (s *Server) Run(ctx context.Context) error {
	refresh := time.NewTicker(s.cfg.RefreshInterval)
	flush := time.NewTicker(s.cfg.FlushInterval)
	poll := time.NewTicker(s.cfg.PollInterval)
	defer refresh.Stop()
	defer flush.Stop()
	defer poll.Stop()
	if s.dash != nil {
		// Beside this loop, whose polls and database calls may take
		// seconds: the chart keeps its pace when they do.
		s.bg.Go(func() { s.dash.sampleUntil(ctx) })
	}
	s.startRecordings(ctx)
	s.pollAll(ctx)
	for {
		select {
		case <-ctx.Done():
			// The streams' last reports go into the last flush.
			s.streams.closeAll()
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			err := s.Flush(final)
			cancel()
			s.bg.Wait()
			return err
		case <-flush.C:
			if err := s.Flush(ctx); err != nil && !errors.Is(err, context.Canceled) {
				s.log.Error("writing reports to the database (kept, will retry)", "err", err)
			}
		case <-refresh.C:
			if err := s.reg.refresh(ctx); err != nil && !errors.Is(err, context.Canceled) {
				s.log.Error("reloading the fleet from the database", "err", err)
			} else if err == nil {
				s.sweepLeaving(ctx)
			}
			s.fleetMeetings.expire(s.cfg.Clock(), s.cfg.GetMeetingsMaxAge)
		case <-poll.C:
			s.pollAll(ctx)
			s.logHealth()
		}
	}
}

// Flush writes buffered reports now.
func (s *Server) Flush(ctx context.Context) error {
	start := time.Now()
	err := s.reg.flush(ctx)
	if err != nil {
		s.metrics.flushFailures.Inc()
		return err
	}
	s.metrics.flushLatency.Observe(time.Since(start).Seconds())
	return nil
}

// Refresh reloads the registry from the store now.
func (s *Server) Refresh(ctx context.Context) error { return s.reg.refresh(ctx) }

func (s *Server) pollAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, n := range s.reg.polledNodes() {
		wg.Go(func() { s.pollNode(ctx, n) })
	}
	wg.Wait()
}
