package ec2

import (
	"net/http"
	"sync"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// exchangeKey carries a lookup's *exchange in the request context.
type exchangeKey struct{}

// exchange remembers the last HTTP request of one metadata lookup, its
// nested token request included, and how it ended.
type exchange struct {
	mu      sync.Mutex
	method  string
	status  int
	sendErr error
}

func (e *exchange) record(method string, resp *http.Response, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.method, e.status, e.sendErr = method, 0, err
	if resp != nil {
		e.status = resp.StatusCode
	}
}

func (e *exchange) last() (method string, status int, sendErr error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.method, e.status, e.sendErr
}

// observingClient is the IMDS client's HTTP client: it reports every
// exchange to the lookup that made it.
type observingClient struct{ next imds.HTTPClient }

func (c observingClient) Do(req *http.Request) (*http.Response, error) {
	resp, err := c.next.Do(req)
	if ex, ok := req.Context().Value(exchangeKey{}).(*exchange); ok {
		ex.record(req.Method, resp, err)
	}
	return resp, err
}
