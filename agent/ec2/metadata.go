package ec2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// Metadata items the agent reads, relative to /latest/meta-data/.
const (
	itemInstanceID     = "instance-id"
	itemPublicIPv4     = "public-ipv4"
	itemLocalIPv4      = "local-ipv4"
	itemMAC            = "mac"
	itemRegion         = "placement/region"
	itemLifecycleState = "autoscaling/target-lifecycle-state"
	itemInstanceTags   = "tags/instance"
	itemGroupTag       = "tags/instance/aws:autoscaling:groupName"
)

// Target lifecycle states of an Auto Scaling instance that the agent acts on
// (autoscaling/target-lifecycle-state; the others are Detached, Standby and
// the Warmed:* states of a warm pool).
const (
	StateInService  = "InService"
	StateTerminated = "Terminated"
)

// Budgets of one metadata lookup. The service is link-local and answers in
// milliseconds, so a host without it finds out within DefaultTimeout.
const (
	DefaultTimeout        = 2 * time.Second // one lookup, token and retry included
	dialTimeout           = 300 * time.Millisecond
	responseHeaderTimeout = time.Second
	lookupAttempts        = 2 // the second attempt also renews a refused token
	retryDelay            = 100 * time.Millisecond
)

// The kinds of MetadataError, for errors.Is.
var (
	// ErrNoIMDS: nothing answered as an EC2 instance metadata service: the
	// host is not on EC2, or the service is blocked (firewall, proxy, a
	// container beyond the PUT hop limit).
	ErrNoIMDS = errors.New("no EC2 instance metadata service (not on EC2, or blocked)")
	// ErrNotFound: the service answered 404, the item does not exist on this
	// instance (no public address, not in an Auto Scaling group, ...).
	ErrNotFound = errors.New("not in the instance metadata")
	// ErrRefused: the service refused the request: the IMDSv2 token was
	// rejected (401) or the service is turned off for this instance (403).
	ErrRefused = errors.New("instance metadata service refused the request (IMDSv2 token rejected, or IMDS turned off)")
)

// MetadataError is a failed metadata lookup. errors.Is tells its kind:
// ErrNoIMDS, ErrNotFound or ErrRefused (none of them for other failures,
// such as a 5xx answer or the caller's context ending).
type MetadataError struct {
	Item   string // the item, e.g. "public-ipv4"
	Status int    // the last HTTP status the service answered; 0 when none
	Kind   error  // ErrNoIMDS, ErrNotFound, ErrRefused or nil
	Err    error  // the SDK's error
}

func (e *MetadataError) Error() string {
	if e.Kind == nil {
		return fmt.Sprintf("ec2 metadata %s: %v", e.Item, e.Err)
	}
	return fmt.Sprintf("ec2 metadata %s: %v: %v", e.Item, e.Kind, e.Err)
}

// Unwrap gives errors.Is and errors.As both the kind and the SDK's error.
func (e *MetadataError) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Err}
	}
	return []error{e.Kind, e.Err}
}

// Metadata reads this instance's facts from the EC2 instance metadata
// service. It speaks IMDSv2 only (a session token on every request, never
// the IMDSv1 fallback) and gives up quickly on a host without the service.
// It is safe for concurrent use.
type Metadata struct {
	client  *imds.Client
	timeout time.Duration
}

// NewMetadata returns a reader of the instance metadata service at endpoint
// (e.g. "http://169.254.169.254"); "" means the SDK's default, which honours
// AWS_EC2_METADATA_SERVICE_ENDPOINT. It contacts nothing: the first lookup
// fetches the token. One lookup, its token request and retry included, gets
// DefaultTimeout.
func NewMetadata(endpoint string) (*Metadata, error) {
	if endpoint != "" {
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("ec2 metadata endpoint %q: want an http:// or https:// URL", endpoint)
		}
	}
	// The service is link-local: never through a proxy, short dial and
	// answer timeouts.
	transport := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = dialTimeout }).
		WithTransportOptions(func(t *http.Transport) {
			t.Proxy = nil
			t.ResponseHeaderTimeout = responseHeaderTimeout
		})
	client := imds.New(imds.Options{
		Endpoint:       endpoint,
		HTTPClient:     observingClient{transport},
		EnableFallback: aws.FalseTernary,
		// Our retryer's short, fixed delay, not the SDK's jitter up to 1 s.
		DisableDefaultMaxBackoff: true,
		Retryer: retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = lookupAttempts
			so.RateLimiter = ratelimit.None
			so.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return retryDelay, nil })
		}),
	})
	return &Metadata{client: client, timeout: DefaultTimeout}, nil
}

// Available reports whether the instance metadata service answers: the
// token and the instance ID. An agent that needs to say why not calls
// InstanceID and reports its error.
func (m *Metadata) Available(ctx context.Context) bool {
	_, err := m.InstanceID(ctx)
	return err == nil
}

// InstanceID returns the instance's ID, e.g. "i-0123456789abcdef0".
func (m *Metadata) InstanceID(ctx context.Context) (string, error) {
	return m.get(ctx, itemInstanceID)
}

// Region returns the instance's AWS region, e.g. "eu-central-1".
func (m *Metadata) Region(ctx context.Context) (string, error) {
	return m.get(ctx, itemRegion)
}

// LifecycleState returns the instance's Auto Scaling target lifecycle state:
// StateInService, StateTerminated (a scale-in has begun), "Standby",
// "Detached", or a warm pool's "Warmed:*" state. An instance outside any
// Auto Scaling group has none (ErrNotFound).
func (m *Metadata) LifecycleState(ctx context.Context) (string, error) {
	return m.get(ctx, itemLifecycleState)
}

// PublicIPv4 returns the instance's public IPv4 address (ErrNotFound when it
// has none).
func (m *Metadata) PublicIPv4(ctx context.Context) (netip.Addr, error) {
	return m.addr(ctx, itemPublicIPv4, netip.Addr.Is4)
}

// LocalIPv4 returns the instance's private IPv4 address.
func (m *Metadata) LocalIPv4(ctx context.Context) (netip.Addr, error) {
	return m.addr(ctx, itemLocalIPv4, netip.Addr.Is4)
}

// IPv6 returns the first IPv6 address of the instance's primary network
// interface (ErrNotFound when it has none).
func (m *Metadata) IPv6(ctx context.Context) (netip.Addr, error) {
	mac, err := m.get(ctx, itemMAC)
	if err != nil {
		return netip.Addr{}, err
	}
	return m.addr(ctx, "network/interfaces/macs/"+mac+"/ipv6s", func(a netip.Addr) bool { return a.Is6() && !a.Is4In6() })
}

// AutoScalingGroup returns the name of the instance's Auto Scaling group,
// from its aws:autoscaling:groupName tag. That needs instance tags in the
// instance metadata (InstanceMetadataTags=enabled in the launch template);
// the error says which of the two is missing.
func (m *Metadata) AutoScalingGroup(ctx context.Context) (string, error) {
	name, err := m.get(ctx, itemGroupTag)
	if !errors.Is(err, ErrNotFound) {
		return name, err
	}
	hint := "the instance has no aws:autoscaling:groupName tag: it is not in an Auto Scaling group"
	if _, tagsErr := m.get(ctx, itemInstanceTags); errors.Is(tagsErr, ErrNotFound) {
		hint = "instance tags are not in the instance metadata: allow them with InstanceMetadataTags=enabled"
	}
	return "", fmt.Errorf("%w (%s)", err, hint)
}

// addr reads item as the first address of a newline-separated list and
// checks it with want.
func (m *Metadata) addr(ctx context.Context, item string, want func(netip.Addr) bool) (netip.Addr, error) {
	v, err := m.get(ctx, item)
	if err != nil {
		return netip.Addr{}, err
	}
	first, _, _ := strings.Cut(v, "\n")
	a, err := netip.ParseAddr(strings.TrimSpace(first))
	if err != nil || !want(a) {
		err = fmt.Errorf("unexpected address %q", first)
		return netip.Addr{}, &MetadataError{Item: item, Status: http.StatusOK, Err: err}
	}
	return a, nil
}

// get reads one item within the lookup budget and classifies a failure by
// the last HTTP exchange it made: the SDK hides the cause of a failed token
// request behind an error without Unwrap.
func (m *Metadata) get(ctx context.Context, item string) (string, error) {
	lookupCtx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	ex := &exchange{}
	out, err := m.client.GetMetadata(context.WithValue(lookupCtx, exchangeKey{}, ex), &imds.GetMetadataInput{Path: item})
	if err != nil {
		return "", classify(ctx, item, ex, err)
	}
	defer out.Content.Close()
	body, err := io.ReadAll(out.Content)
	if err != nil {
		return "", &MetadataError{Item: item, Status: http.StatusOK, Err: err}
	}
	return strings.TrimSpace(string(body)), nil
}

// classify wraps err into a MetadataError whose kind follows the last
// exchange: no answer at all, a 404, a refused token.
func classify(ctx context.Context, item string, ex *exchange, err error) error {
	e := &MetadataError{Item: item, Err: err}
	method, status, sendErr := ex.last()
	e.Status = status
	switch {
	case ctx.Err() != nil:
		// The caller gave up; that says nothing about the service.
	case sendErr != nil:
		e.Kind = ErrNoIMDS
	case method == http.MethodPut && status == http.StatusForbidden:
		e.Kind = ErrRefused
	case method == http.MethodPut && status != 0:
		// Something answered, but it does not hand out IMDSv2 tokens.
		e.Kind = ErrNoIMDS
	case status == http.StatusNotFound:
		e.Kind = ErrNotFound
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Kind = ErrRefused
	}
	return e
}
