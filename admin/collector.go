package admin

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// statusCollector turns the node's Status into Prometheus metrics at each
// scrape.
type statusCollector struct{ s *Server }

var (
	mReady     = prometheus.NewDesc("cocoon_ready", "1 when the node can do its job.", nil, nil)
	mConnected = prometheus.NewDesc("cocoon_connected_peers", "Peers this node has a connection to.", nil, nil)
	mDHT       = prometheus.NewDesc("cocoon_dht_routing_table", "DHT servers in the routing table.", nil, nil)
	mKept      = prometheus.NewDesc("cocoon_kept_peers", "Peers kept up, by whether their last check passed.", []string{"up"}, nil)
	mOffers    = prometheus.NewDesc("cocoon_offers", "Live offers in the offer book, by role.", []string{"role"}, nil)
	mRegistry  = prometheus.NewDesc("cocoon_registry_seqno", "Sequence number of the root contract as last read.", nil, nil)

	mWorkerUp       = prometheus.NewDesc("cocoon_proxy_worker_up", "1 when the proxy routes to the worker.", []string{"worker"}, nil)
	mWorkerActive   = prometheus.NewDesc("cocoon_proxy_worker_active", "Requests in flight to the worker.", []string{"worker"}, nil)
	mWorkerServed   = prometheus.NewDesc("cocoon_proxy_worker_requests_total", "Requests sent to the worker.", []string{"worker"}, nil)
	mWorkerFailures = prometheus.NewDesc("cocoon_proxy_worker_failures_total", "Attempts the worker failed.", []string{"worker"}, nil)
	mWorkerTTFT     = prometheus.NewDesc("cocoon_proxy_worker_ttft_seconds", "Moving average of the worker's time to first chunk.", []string{"worker"}, nil)
	mWorkerSuccess  = prometheus.NewDesc("cocoon_proxy_worker_success_ratio", "Moving average of the worker's outcomes.", []string{"worker"}, nil)

	mServingActive = prometheus.NewDesc("cocoon_worker_active", "Requests the worker is serving.", nil, nil)
	mServingServed = prometheus.NewDesc("cocoon_worker_requests_total", "Requests the worker answered in full.", nil, nil)
	mServingTTFT   = prometheus.NewDesc("cocoon_worker_ttft_seconds", "Moving average of the engine's time to first chunk.", nil, nil)
	mServingTPS    = prometheus.NewDesc("cocoon_worker_tokens_per_second", "Moving average of the engine's generation speed.", nil, nil)

	mEarned          = prometheus.NewDesc("cocoon_payments_earned_nanoton", "nanoTON received on this node's channels, as signed states.", nil, nil)
	mSpent           = prometheus.NewDesc("cocoon_payments_spent_nanoton", "nanoTON paid on this node's channels, as signed states.", nil, nil)
	mChannelDeposit  = prometheus.NewDesc("cocoon_channel_deposit_nanoton", "A payment channel's deposit.", []string{"peer", "side", "channel"}, nil)
	mChannelSigned   = prometheus.NewDesc("cocoon_channel_signed_nanoton", "A payment channel's newest signed cumulative amount.", []string{"peer", "side", "channel"}, nil)
	mChannelUnsigned = prometheus.NewDesc("cocoon_channel_unsigned_nanoton", "Owed on a payment channel beyond its newest signed (and, for a payer, acknowledged) state.", []string{"peer", "side", "channel"}, nil)
)

func (c statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mReady, mConnected, mDHT, mKept, mOffers, mRegistry, mWorkerUp, mWorkerActive,
		mWorkerServed, mWorkerFailures, mWorkerTTFT, mWorkerSuccess, mServingActive, mServingServed, mServingTTFT, mServingTPS,
		mEarned, mSpent, mChannelDeposit, mChannelSigned, mChannelUnsigned} {
		ch <- d
	}
}

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := c.s.Status(ctx)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(mReady, b2f(s.Ready))
	gauge(mConnected, float64(s.Connected))
	if s.DHT >= 0 {
		gauge(mDHT, float64(s.DHT))
	}
	var up, down float64
	for _, p := range s.Kept {
		if p.Up {
			up++
		} else {
			down++
		}
	}
	gauge(mKept, up, "true")
	gauge(mKept, down, "false")
	roles := map[string]float64{"worker": 0, "proxy": 0}
	for _, o := range s.Offers {
		roles[o.Role]++
	}
	for role, v := range roles {
		gauge(mOffers, v, role)
	}
	if s.Registry != nil {
		gauge(mRegistry, float64(s.Registry.Seqno))
	}
	for _, w := range s.Workers {
		gauge(mWorkerUp, b2f(w.Up), w.Peer)
		gauge(mWorkerActive, float64(w.Active), w.Peer)
		counter(mWorkerServed, float64(w.Served), w.Peer)
		counter(mWorkerFailures, float64(w.Failures), w.Peer)
		gauge(mWorkerTTFT, w.TTFTms/1000, w.Peer)
		gauge(mWorkerSuccess, w.Success, w.Peer)
	}
	if sv := s.Serving; sv != nil {
		gauge(mServingActive, float64(sv.Active))
		counter(mServingServed, float64(sv.Served))
		gauge(mServingTTFT, sv.TTFTms/1000)
		gauge(mServingTPS, sv.TokensPerSec)
	}
	if ps := s.Payments; ps != nil {
		counter(mEarned, float64(ps.Earned))
		counter(mSpent, float64(ps.Spent))
		for _, ch := range ps.Channels {
			if ch.State == "closed" || ch.State == "replaced" {
				continue
			}
			signed := ch.Received
			if ch.Role == "payer" {
				signed = ch.Sent
			}
			gauge(mChannelDeposit, float64(ch.Deposit), ch.Peer, ch.Role, ch.Address)
			gauge(mChannelSigned, float64(signed), ch.Peer, ch.Role, ch.Address)
			gauge(mChannelUnsigned, float64(ch.Unsigned), ch.Peer, ch.Role, ch.Address)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
