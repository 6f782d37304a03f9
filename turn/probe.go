package turn

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pion/stun/v3"
)

// Credentials returns the time-limited TURN credentials of the TURN REST API
// scheme that BBB hands its clients and coturn checks with use-auth-secret
// and static-auth-secret: username "<unix expiry>:<userID>", password
// base64(HMAC-SHA1(secret, username)).
func Credentials(secret, userID string, ttl time.Duration, now time.Time) (username, password string) {
	username = strconv.FormatInt(now.Add(ttl).Unix(), 10) + ":" + userID
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Default ports (RFC 7064, RFC 7065).
const (
	DefaultPort    = 3478 // stun: and turn:
	DefaultTLSPort = 5349 // turns:
)

// URI is a STUN or TURN server as clients are told about it (RFC 7064,
// RFC 7065).
type URI struct {
	Scheme    string // "stun", "turn" or "turns"
	Host      string // a name or an IP address, IPv6 without brackets
	Port      int    // DefaultPort, or DefaultTLSPort for turns, unless given
	Transport string // "udp" or "tcp": turns is always tcp (TLS); stun always udp
}

// HostPort is "host:port", IPv6 in brackets.
func (u URI) HostPort() string {
	return net.JoinHostPort(u.Host, strconv.Itoa(u.Port))
}

// String is the URI with its port, and its transport for turn and turns.
func (u URI) String() string {
	s := u.Scheme + ":" + u.HostPort()
	if u.Scheme != "stun" {
		s += "?transport=" + u.Transport
	}
	return s
}

// ParseURI parses stun:host[:port], turn:host[:port][?transport=udp|tcp]
// and turns:host[:port][?transport=tcp], with host a name, an IPv4 address
// or a bracketed IPv6 address. It accepts what Render writes, less TURN
// over DTLS (turns with transport=udp), which the probe does not speak.
func ParseURI(s string) (URI, error) {
	if err := checkURL(s, "stun:", "turn:", "turns:"); err != nil {
		return URI{}, fmt.Errorf("STUN/TURN URI %q: %w", s, err)
	}
	scheme, rest, _ := strings.Cut(s, ":")
	hostport, query, _ := strings.Cut(rest, "?")
	u := URI{Scheme: scheme, Port: DefaultPort, Transport: "udp"}
	if scheme == "turns" {
		u.Port, u.Transport = DefaultTLSPort, "tcp"
	}
	if t, ok := strings.CutPrefix(query, "transport="); ok {
		u.Transport = t
	}
	if scheme == "turns" && u.Transport == "udp" {
		return URI{}, fmt.Errorf("STUN/TURN URI %q: turns with transport=udp is TURN over DTLS, which is not supported: use transport=tcp", s)
	}
	port := ""
	if h, ok := strings.CutPrefix(hostport, "["); ok {
		u.Host, port, _ = strings.Cut(h, "]")
		port = strings.TrimPrefix(port, ":")
	} else {
		u.Host, port, _ = strings.Cut(hostport, ":")
	}
	if port != "" {
		u.Port, _ = strconv.Atoi(port) // checkURL checked it
	}
	return u, nil
}

// DefaultProbeTimeout bounds a probe unless WithTimeout says otherwise.
const DefaultProbeTimeout = 5 * time.Second

// ProbeUserID is the user id in the probe's TURN username, so coturn's log
// tells the agent's probes from clients.
const ProbeUserID = "bbb-agent-probe"

// probeCredentialTTL is how long the probe's credentials last: coturn
// refuses them once expired, so a node whose clock is that far behind the
// TURN server's fails the probe, as its clients would.
const probeCredentialTTL = time.Hour

// Errors a Result can wrap, for errors.Is.
var (
	// ErrUnreachable: no connection to the server, or no answer to a STUN
	// Binding request in time.
	ErrUnreachable = errors.New("server unreachable")
	// ErrCredentialsRefused: the server answered the authenticated
	// Allocate with 401 Unauthorized.
	ErrCredentialsRefused = errors.New("the TURN server refuses the credentials (static-auth-secret mismatch?)")
)

// Result is one probe of one server.
type Result struct {
	URI URI
	// STUNOK: a STUN Binding request got a success response with an
	// XOR-MAPPED-ADDRESS, Mapped.
	STUNOK bool
	Mapped netip.AddrPort
	// AllocateOK (turn and turns): a TURN Allocate got a relayed address,
	// Relayed. Err is still set when freeing the allocation failed, or when
	// the server allocated without checking the credentials (open relay).
	AllocateOK bool
	Relayed    netip.AddrPort
	// RTT is the round trip of the STUN Binding request.
	RTT time.Duration
	// Err says what failed; nil when OK.
	Err error
}

// OK says whether the server works for clients: STUN answers, and for turn
// and turns an allocation succeeds.
func (r Result) OK() bool {
	return r.Err == nil && r.STUNOK && (r.URI.Scheme == "stun" || r.AllocateOK)
}

// An Option changes how Probe probes.
type Option func(*probeConfig)

type probeConfig struct {
	timeout time.Duration
	tls     *tls.Config
	now     func() time.Time
}

// WithTimeout bounds the whole probe (default DefaultProbeTimeout); a
// shorter deadline on the context wins.
func WithTimeout(d time.Duration) Option {
	return func(c *probeConfig) { c.timeout = d }
}

// WithTLSConfig sets the TLS configuration for turns (default: the system's
// roots, the URI's host as server name). A test seam: the tests trust their
// coturn's self-signed certificate through it.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *probeConfig) { c.tls = cfg }
}

// WithClock sets the clock the credentials' expiry is computed from
// (default time.Now). A test seam: the tests play a node whose clock is
// behind.
func WithClock(now func() time.Time) Option {
	return func(c *probeConfig) { c.now = now }
}

// Probe checks a server the way a BBB client uses it, on the wire: a STUN
// Binding request, then for turn and turns a TURN Allocate with credentials
// derived from secret (the long-term credential mechanism: the first
// Allocate learns realm and nonce from a 401, the second authenticates),
// then a Refresh with lifetime 0 that frees the allocation. UDP, TCP and TLS
// (turns) are spoken; TURN over DTLS is not.
func Probe(ctx context.Context, uri URI, secret string, opts ...Option) Result {
	cfg := probeConfig{timeout: DefaultProbeTimeout, now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	res := Result{URI: uri}
	if uri.Scheme != "stun" && secret == "" {
		res.Err = errors.New("no TURN shared secret to authenticate the allocation with")
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()

	c, err := dial(ctx, uri, cfg.tls)
	if err != nil {
		res.Err = err
		return res
	}
	defer c.close()
	// Closing the connection ends a read or write the context outlives.
	defer context.AfterFunc(ctx, c.close)()

	mapped, rtt, err := c.binding(ctx)
	if err != nil {
		res.Err = err
		return res
	}
	res.STUNOK, res.Mapped, res.RTT = true, mapped, rtt
	if uri.Scheme == "stun" {
		return res
	}
	username, password := Credentials(secret, ProbeUserID, probeCredentialTTL, cfg.now())
	res.Relayed, res.AllocateOK, res.Err = c.allocate(ctx, username, password)
	return res
}

// maxMessage is the longest STUN or ChannelData message: a 16-bit length
// after the header, padded to 4 bytes.
const maxMessage = 20 + 0xFFFF + 3

// stunConn carries STUN transactions to one server.
type stunConn struct {
	conn    net.Conn
	stream  bool   // TCP or TLS: messages framed by their length, no retransmissions
	network string // udp, tcp or tls, for messages
	addr    string
	buf     []byte
}

// dial connects to the server; TLS for turns.
func dial(ctx context.Context, uri URI, tlsConfig *tls.Config) (*stunConn, error) {
	network := uri.Transport
	if uri.Scheme == "stun" {
		network = "udp"
	}
	c := &stunConn{network: network, stream: network == "tcp", addr: uri.HostPort(), buf: make([]byte, maxMessage)}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, c.addr)
	if err != nil {
		return nil, c.unreachable(ctx, err)
	}
	if uri.Scheme == "turns" {
		c.network = "tls"
		cfg := &tls.Config{}
		if tlsConfig != nil {
			cfg = tlsConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = uri.Host
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			if ctx.Err() != nil {
				return nil, c.unreachable(ctx, err)
			}
			return nil, fmt.Errorf("TLS handshake with %s: %w", c.addr, err)
		}
		conn = tc
	}
	c.conn = conn
	return c, nil
}

func (c *stunConn) close() { c.conn.Close() }

// unreachable wraps err in ErrUnreachable, unless the caller canceled the
// probe.
func (c *stunConn) unreachable(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("probe of %s canceled: %w", c.addr, ctx.Err())
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && !errors.Is(err, errNoResponse) {
		err = fmt.Errorf("no answer from %s over %s in time: %w", c.addr, c.network, ctx.Err())
	}
	return fmt.Errorf("%w: %w", ErrUnreachable, err)
}

// binding sends a STUN Binding request and returns the server-reflexive
// address.
func (c *stunConn) binding(ctx context.Context) (netip.AddrPort, time.Duration, error) {
	res, rtt, err := c.do(ctx, stun.BindingRequest)
	if err != nil {
		if errors.Is(err, errNoResponse) || errors.Is(err, errTransport) {
			return netip.AddrPort{}, 0, c.unreachable(ctx, err)
		}
		return netip.AddrPort{}, 0, err
	}
	if res.Type.Class != stun.ClassSuccessResponse {
		return netip.AddrPort{}, 0, fmt.Errorf("STUN Binding: %s answers %s", c.addr, errorCode(res))
	}
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(res); err != nil {
		return netip.AddrPort{}, 0, fmt.Errorf("STUN Binding: %s answers without an XOR-MAPPED-ADDRESS: %w", c.addr, err)
	}
	return addrPort(xor), rtt, nil
}

// requestedTransportUDP asks for a UDP relay (RFC 8656, REQUESTED-TRANSPORT),
// what browsers ask for over any transport.
var requestedTransportUDP = stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}

// lifetimeZero in a Refresh frees the allocation.
var lifetimeZero = stun.RawAttribute{Type: stun.AttrLifetime, Value: []byte{0, 0, 0, 0}}

// allocate makes a TURN allocation with the long-term credential mechanism
// and frees it again.
func (c *stunConn) allocate(ctx context.Context, username, password string) (netip.AddrPort, bool, error) {
	allocate := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	res, _, err := c.do(ctx, allocate, requestedTransportUDP)
	if err != nil {
		return netip.AddrPort{}, false, err
	}
	var realm stun.Realm
	var nonce stun.Nonce
	switch code := errorCodeOf(res); {
	case res.Type.Class == stun.ClassSuccessResponse:
		// An open relay: clients get through, but anyone else does too.
		var relayed stun.XORMappedAddress
		relayed.GetFromAs(res, stun.AttrXORRelayedAddress)
		c.do(ctx, stun.NewType(stun.MethodRefresh, stun.ClassRequest), lifetimeZero)
		return addrPort(relayed), true, fmt.Errorf("TURN Allocate: %s allocates without credentials: an open relay that ignores the shared secret (use-auth-secret off?)", c.addr)
	case code != stun.CodeUnauthorized:
		return netip.AddrPort{}, false, fmt.Errorf("TURN Allocate: %s answers %s", c.addr, errorCode(res))
	default:
		if err := realm.GetFrom(res); err != nil {
			return netip.AddrPort{}, false, fmt.Errorf("TURN Allocate: %s answers 401 without a REALM: %w", c.addr, err)
		}
		if err := nonce.GetFrom(res); err != nil {
			return netip.AddrPort{}, false, fmt.Errorf("TURN Allocate: %s answers 401 without a NONCE: %w", c.addr, err)
		}
	}

	a := authenticator{username: stun.NewUsername(username), realm: realm, nonce: nonce,
		integrity: stun.NewLongTermIntegrity(username, realm.String(), password)}
	res, err = a.do(ctx, c, allocate, requestedTransportUDP)
	if err != nil {
		return netip.AddrPort{}, false, err
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(res, stun.AttrXORRelayedAddress); err != nil {
		return netip.AddrPort{}, false, fmt.Errorf("TURN Allocate: %s answers without an XOR-RELAYED-ADDRESS: %w", c.addr, err)
	}

	if _, err := a.do(ctx, c, stun.NewType(stun.MethodRefresh, stun.ClassRequest), lifetimeZero); err != nil {
		return addrPort(relayed), true, fmt.Errorf("freeing the allocation: %w", err)
	}
	return addrPort(relayed), true, nil
}

// authenticator signs requests with the long-term credential mechanism.
type authenticator struct {
	username  stun.Username
	realm     stun.Realm
	nonce     stun.Nonce
	integrity stun.MessageIntegrity
}

// do performs one authenticated transaction, once more with the new nonce
// after a 438 Stale Nonce, and returns its success response, checked
// against the credentials.
func (a *authenticator) do(ctx context.Context, c *stunConn, t stun.MessageType, attrs ...stun.Setter) (*stun.Message, error) {
	name := "TURN " + t.Method.String()
	for attempt := 0; ; attempt++ {
		signed := append(slices.Clip(attrs), &a.username, &a.realm, &a.nonce, a.integrity)
		res, _, err := c.do(ctx, t, signed...)
		if err != nil {
			return nil, err
		}
		if res.Type.Class == stun.ClassSuccessResponse {
			if err := a.integrity.Check(res); err != nil {
				return nil, fmt.Errorf("%s: the response of %s fails MESSAGE-INTEGRITY: %w", name, c.addr, err)
			}
			return res, nil
		}
		switch errorCodeOf(res) {
		case stun.CodeStaleNonce:
			if attempt == 0 && a.nonce.GetFrom(res) == nil {
				continue
			}
		case stun.CodeUnauthorized:
			return nil, fmt.Errorf("%s: %w: %s answers %s", name, ErrCredentialsRefused, c.addr, errorCode(res))
		}
		return nil, fmt.Errorf("%s: %s answers %s", name, c.addr, errorCode(res))
	}
}

var (
	// errNoResponse: the server did not answer a request in time.
	errNoResponse = errors.New("no response")
	// errTransport: the connection failed (refused, reset, closed).
	errTransport = errors.New("connection failed")
)

// stunRTO is the first retransmission timeout over UDP; it doubles after
// each retransmission (RFC 8489 section 6.2.1), until the probe's deadline.
const stunRTO = 250 * time.Millisecond

// do sends a request of type t with attrs, SOFTWARE and FINGERPRINT, and
// returns the response to it with its round trip time, from the last
// (re)transmission. Over UDP it retransmits until the context ends.
func (c *stunConn) do(ctx context.Context, t stun.MessageType, attrs ...stun.Setter) (*stun.Message, time.Duration, error) {
	name := "TURN " + t.Method.String()
	if t.Method == stun.MethodBinding {
		name = "STUN Binding"
	}
	setters := append([]stun.Setter{stun.TransactionID, t, software}, attrs...)
	req, err := stun.Build(append(setters, stun.Fingerprint)...)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", name, err)
	}
	deadline, _ := ctx.Deadline() // Probe always sets one
	rto := stunRTO
	for {
		sent := time.Now()
		if _, err := c.conn.Write(req.Raw); err != nil {
			return nil, 0, c.failed(ctx, name, err)
		}
		wait := deadline
		if next := sent.Add(rto); !c.stream && next.Before(deadline) {
			wait = next
		}
		rto *= 2
		if err := c.conn.SetReadDeadline(wait); err != nil {
			return nil, 0, c.failed(ctx, name, err)
		}
		res, err := c.read(req.TransactionID)
		var ne net.Error
		switch {
		case err == nil:
			return res, time.Since(sent), nil
		case errors.As(err, &ne) && ne.Timeout() && time.Now().Before(deadline) && ctx.Err() == nil:
			continue // retransmit
		default:
			return nil, 0, c.failed(ctx, name, err)
		}
	}
}

// failed explains why a transaction got no response.
func (c *stunConn) failed(ctx context.Context, name string, err error) error {
	var ne net.Error
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return fmt.Errorf("%s: probe of %s canceled: %w", name, c.addr, ctx.Err())
	case ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%s: %w from %s over %s in time: %w", name, errNoResponse, c.addr, c.network, context.DeadlineExceeded)
	default:
		return fmt.Errorf("%s: %w: %w", name, errTransport, err)
	}
}

var software = stun.NewSoftware("bbb-agent")

// read reads messages until the response to the transaction id, skipping
// anything else (late answers to earlier transactions, ChannelData).
func (c *stunConn) read(id [stun.TransactionIDSize]byte) (*stun.Message, error) {
	for {
		data, err := c.readMessage()
		if err != nil {
			return nil, err
		}
		if !stun.IsMessage(data) {
			continue
		}
		m := &stun.Message{Raw: append([]byte(nil), data...)}
		if err := m.Decode(); err != nil {
			return nil, fmt.Errorf("malformed STUN message from %s: %w", c.addr, err)
		}
		if m.TransactionID != id || m.Type.Class == stun.ClassRequest || m.Type.Class == stun.ClassIndication {
			continue
		}
		if m.Contains(stun.AttrFingerprint) {
			if err := stun.Fingerprint.Check(m); err != nil {
				return nil, fmt.Errorf("STUN message from %s fails its FINGERPRINT: %w", c.addr, err)
			}
		}
		return m, nil
	}
}

// readMessage reads one datagram, or over a stream one STUN message or
// ChannelData message (RFC 8656 section 12.5), by its length.
func (c *stunConn) readMessage() ([]byte, error) {
	if !c.stream {
		n, err := c.conn.Read(c.buf)
		return c.buf[:n], err
	}
	if _, err := io.ReadFull(c.conn, c.buf[:4]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(c.buf[2:4]))
	if c.buf[0]&0xC0 == 0 {
		n += 20 - 4 // the rest of a STUN header
	} else {
		n = (n + 3) &^ 3 // ChannelData is padded over streams
	}
	if _, err := io.ReadFull(c.conn, c.buf[4:4+n]); err != nil {
		return nil, err
	}
	return c.buf[:4+n], nil
}

// errorCodeOf is the ERROR-CODE of an error response, 0 if none.
func errorCodeOf(m *stun.Message) stun.ErrorCode {
	var code stun.ErrorCodeAttribute
	if m.Type.Class != stun.ClassErrorResponse || code.GetFrom(m) != nil {
		return 0
	}
	return code.Code
}

// errorCode describes an error response ("error 437: Allocation
// Mismatch").
func errorCode(m *stun.Message) string {
	var code stun.ErrorCodeAttribute
	if m.Type.Class != stun.ClassErrorResponse {
		return "with " + m.Type.String()
	}
	if err := code.GetFrom(m); err != nil {
		return "an error without an ERROR-CODE"
	}
	return fmt.Sprintf("error %d %s", code.Code, code.Reason)
}

func addrPort(a stun.XORMappedAddress) netip.AddrPort {
	ip, _ := netip.AddrFromSlice(a.IP)
	return netip.AddrPortFrom(ip.Unmap(), uint16(a.Port))
}
