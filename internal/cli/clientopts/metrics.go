package clientopts

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricsReadHeaderTimeout bounds how long a /metrics client may take to
// send its request's headers.
const metricsReadHeaderTimeout = 10 * time.Second

// ServeMetrics serves reg's metrics at /metrics on listen (a pipeline
// tool's --listen) and returns the address it listens on and a func that
// stops serving. what names the tool in the error.
func ServeMetrics(what, listen string, reg prometheus.Gatherer) (string, func(), error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return "", nil, fmt.Errorf("%s: listen on %s: %w (another process there? pick one with --listen)", what, listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: metricsReadHeaderTimeout}
	go hs.Serve(ln)
	return ln.Addr().String(), func() { hs.Close() }, nil
}
