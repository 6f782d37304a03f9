package balancer

import (
	"bufio"
	"compress/gzip"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
)

// metrics are the balancer's Prometheus metrics: counters and histograms on
// a registry of its own, and the fleet's families (fleetmetrics.go), which
// ServeHTTP writes straight from one copy of the registry's few fields it
// shows (registry.metricsNodes). At 10,000 nodes those are 120,000 series;
// built as client_golang const metrics they cost a scrape ~280 ms and left
// the process ~90 MiB bigger after three scrapes; written directly from
// whole node views ~45 ms and ~14 MiB; from metricsNodes (then 128 bytes a
// node), with a pooled compressor, 30-38 ms and ~4.5 MiB, ~6 after nine
// scrapes; from 56-byte metricsNodes and with a collection after each
// scrape, ~1 MiB, also after nine (BenchmarkMemoryProcess).
type metrics struct {
	nodes         func() []metricsNode
	reg           *prometheus.Registry
	apiRequests   *prometheus.CounterVec
	apiLatency    *prometheus.HistogramVec
	placements    *prometheus.CounterVec
	reports       prometheus.Counter
	reportErrors  *prometheus.CounterVec
	flushLatency  prometheus.Histogram
	flushFailures prometheus.Counter
	collector     *transientCollector // after each scrape
}

func newMetrics(nodes func() []metricsNode, collector *transientCollector) *metrics {
	m := &metrics{
		nodes:     nodes,
		collector: collector,
		reg:       prometheus.NewRegistry(),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bbb_balancer_api_requests_total", Help: "BBB API requests by call and returncode (SUCCESS, FAILED, or redirect for join).",
		}, []string{"call", "result"}),
		apiLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "bbb_balancer_api_request_duration_seconds", Help: "BBB API request latency by call.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"call"}),
		placements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bbb_balancer_placements_total", Help: "Placement decisions for create: new, existing (same node), moved (node offline or gone), over_ceiling, tag_fallback, failed.",
		}, []string{"result"}),
		reports: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bbb_balancer_reports_total", Help: "Agent load reports accepted.",
		}),
		reportErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bbb_balancer_report_errors_total", Help: "Agent API requests refused, by reason.",
		}, []string{"reason"}),
		flushLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "bbb_balancer_report_flush_duration_seconds", Help: "Time to write one batch of reports to the store.",
		}),
		flushFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bbb_balancer_report_flush_failures_total", Help: "Report batches the store refused (kept and retried).",
		}),
	}
	m.reg.MustRegister(m.apiRequests, m.apiLatency, m.placements, m.reports, m.reportErrors, m.flushLatency, m.flushFailures,
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(gcCPU)), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// gcCPU adds to the Go collector's families the CPU the collector spent,
// go_cpu_classes_gc_total_cpu_seconds_total (the runtime's estimate, a
// little over): what serve's GOGC costs.
var gcCPU = collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/cpu/classes/gc/total:cpu-seconds$`)}

// ServeHTTP serves /metrics in the text format (0.0.4), which every
// Prometheus version accepts, gzipped when the scraper allows it
// (Prometheus does).
func (m *metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.write(w, r)
	m.collector.after()
}

func (m *metrics) write(w http.ResponseWriter, r *http.Request) {
	families, err := m.reg.Gather()
	if err != nil {
		// A collector's error: what did gather is still worth serving,
		// as promhttp's ContinueOnError does.
		slog.Warn("metrics: gathering failed in part", "err", err)
	}
	h := w.Header()
	h.Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	h.Add("Vary", "Accept-Encoding")
	var out io.Writer = w
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		// A compressor is about 1 MB of tables and windows. It is not
		// kept between scrapes: a kept one would count as live in the
		// collection that follows each (transientCollector).
		gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed) // a valid level: no error
		defer gz.Close()
		out = gz
	}
	bw := bufio.NewWriterSize(out, 32<<10)
	for _, f := range families {
		if _, err := expfmt.MetricFamilyToText(bw, f); err != nil {
			return // the scraper went away
		}
	}
	writeFleetMetrics(bw, m.nodes())
	bw.Flush()
}

// acceptsGzip says whether an Accept-Encoding header allows gzip (and does
// not refuse it with q=0).
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q := strings.ReplaceAll(params, " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}
