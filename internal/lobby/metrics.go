package lobby

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sfere-go/sfere"
	"github.com/sfere-go/sfere/natscluster"
)

// metrics are the lobby's Prometheus metrics, in a registry of its own (no
// global state: two servers in one process, as in the tests, do not clash).
type metrics struct {
	reg              *prometheus.Registry
	evictions        *prometheus.CounterVec
	departures       *prometheus.CounterVec
	joins            prometheus.Counter
	returns          prometheus.Counter
	deliveries       prometheus.Counter
	deliveryFailures prometheus.Counter
	refused          *prometheus.CounterVec
}

// refusalReasons are the labels of lobby_refused_requests_total.
var refusalReasons = []string{"cross_site", "not_datastar", "content_type", "body_too_large", "body_timeout",
	"malformed", "too_many_streams", "rate_limited", "dashboard"}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lobby_stream_evictions_total",
			Help: "Streams that left the store, by eviction cause.",
		}, []string{"cause"}),
		departures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lobby_departures_total",
			Help: "Participants announced as having left, by what ended their stay.",
		}, []string{"reason"}),
		joins: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lobby_joins_total",
			Help: "Participants announced as having joined.",
		}),
		returns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lobby_returns_total",
			Help: "Participants announced as back within their resume window.",
		}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lobby_broadcast_deliveries_total",
			Help: "Lobby messages queued to streams by broadcasts (in a cluster with a history: lobby_cluster_log_deliveries_total).",
		}),
		deliveryFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lobby_broadcast_delivery_failures_total",
			Help: "Streams that refused a broadcast (ended, or too far behind).",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lobby_refused_requests_total",
			Help: "Requests turned away by a limit or check, by reason (see SECURITY.md).",
		}, []string{"reason"}),
	}
	for _, c := range []sfere.Cause{sfere.CauseClosed, sfere.CauseExplicit, sfere.CauseReplaced, sfere.CauseExpired, sfere.CauseSize} {
		m.evictions.WithLabelValues(c.String())
	}
	for _, r := range []string{"leave", "closed", "explicit", "expired", "size", "renamed"} {
		m.departures.WithLabelValues(r)
	}
	for _, r := range refusalReasons {
		m.refused.WithLabelValues(r)
	}
	m.reg.MustRegister(m.evictions, m.departures, m.joins, m.returns, m.deliveries, m.deliveryFailures, m.refused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// watch registers the metrics read from the hub, the heartbeat and the lobby.
func (m *metrics) watch(hub *sfere.Hub, hb *sfere.Heartbeat, l *Lobby) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lobby_streams_open",
			Help: "Lobby streams currently stored.",
		}, func() float64 { return float64(hub.Count(everyone)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lobby_participants",
			Help: "Participants on the list (present or within grace).",
		}, func() float64 { return float64(l.count()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "lobby_heartbeat_sweeps_total",
			Help: "Completed heartbeat sweeps.",
		}, func() float64 { return float64(hb.Stats().Sweeps) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "lobby_heartbeat_writes_total",
			Help: "Heartbeats written to clients.",
		}, func() float64 { return float64(hb.Stats().Writes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "lobby_heartbeat_failures_total",
			Help: "Streams that could not take or write a heartbeat (each was closed).",
		}, func() float64 { return float64(hb.Stats().Failures) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lobby_heartbeat_last_sweep_seconds",
			Help: "How long the last heartbeat sweep took.",
		}, func() float64 { return hb.Stats().LastSweep.Seconds() }),
	)
}

// watchCluster exports a cluster node's counters: NATS gaps (cross-node
// delivery paused) and lost nodes.
func (m *metrics) watchCluster(node *natscluster.Node) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "lobby_cluster_nats_gaps_total",
			Help: "Times this node lost its NATS connection (local streams went on; cross-node delivery paused).",
		}, func() float64 { return float64(node.Stats().Gaps) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "lobby_cluster_nats_gap_seconds_total",
			Help: "Total time without a NATS connection.",
		}, func() float64 { return node.Stats().GapTime.Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "lobby_cluster_nodes_lost_total",
			Help: "Other nodes found silent for 3 presence intervals.",
		}, func() float64 { return float64(node.Stats().NodesLost) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "lobby_cluster_log_deliveries_total",
			Help: "Lobby messages of the cluster's event log queued to this node's streams.",
		}, func() float64 { return float64(node.Stats().LogDelivered) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "lobby_cluster_log_delivery_failures_total",
			Help: "This node's streams that refused an event of the cluster's log (ended, or too far behind).",
		}, func() float64 { return float64(node.Stats().LogFailed) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lobby_cluster_peers",
			Help: "Other nodes this node sees.",
		}, func() float64 { return float64(len(node.Peers())) }),
	)
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}
