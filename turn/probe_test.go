package turn

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

func TestCredentials(t *testing.T) {
	// The passwords were computed apart from this code, with
	//   echo -n "$username" | openssl dgst -sha1 -hmac "$secret" -binary | base64
	now := time.Unix(1700000000, 0) // 2023-11-14T22:13:20Z
	tests := []struct {
		secret, userID string
		ttl            time.Duration
		user, pass     string
	}{
		{"s3cret", "alice", time.Hour, "1700003600:alice", "YAFdW/YDZewZsR1QSgUk2IrfbRI="},
		{"north-pole", "bbb-user-42", 24 * time.Hour, "1700086400:bbb-user-42", "WIsGYb3EXCfIW1dhxf+E+ByPL9M="},
	}
	for _, tt := range tests {
		user, pass := Credentials(tt.secret, tt.userID, tt.ttl, now.In(time.FixedZone("elsewhere", 5*3600)))
		if user != tt.user || pass != tt.pass {
			t.Errorf("Credentials(%q, %q, %s) = %q, %q; want %q, %q", tt.secret, tt.userID, tt.ttl, user, pass, tt.user, tt.pass)
		}
	}
}

func TestParseURI(t *testing.T) {
	tests := []struct {
		in   string
		want URI
		str  string
	}{
		{"stun:turn.example.com", URI{"stun", "turn.example.com", 3478, "udp"}, "stun:turn.example.com:3478"},
		{"stun:192.0.2.1:19302", URI{"stun", "192.0.2.1", 19302, "udp"}, "stun:192.0.2.1:19302"},
		{"turn:turn1.example.com:3478", URI{"turn", "turn1.example.com", 3478, "udp"}, "turn:turn1.example.com:3478?transport=udp"},
		{"turn:turn1.example.com", URI{"turn", "turn1.example.com", 3478, "udp"}, "turn:turn1.example.com:3478?transport=udp"},
		{"turn:turn1.example.com?transport=tcp", URI{"turn", "turn1.example.com", 3478, "tcp"}, "turn:turn1.example.com:3478?transport=tcp"},
		{"turn:turn1.example.com:80?transport=udp", URI{"turn", "turn1.example.com", 80, "udp"}, "turn:turn1.example.com:80?transport=udp"},
		{"turns:turn1.example.com:443?transport=tcp", URI{"turns", "turn1.example.com", 443, "tcp"}, "turns:turn1.example.com:443?transport=tcp"},
		{"turns:turn1.example.com", URI{"turns", "turn1.example.com", 5349, "tcp"}, "turns:turn1.example.com:5349?transport=tcp"},
		{"turn:[2001:db8::1]:3478", URI{"turn", "2001:db8::1", 3478, "udp"}, "turn:[2001:db8::1]:3478?transport=udp"},
		{"turns:[2001:db8::1]", URI{"turns", "2001:db8::1", 5349, "tcp"}, "turns:[2001:db8::1]:5349?transport=tcp"},
	}
	for _, tt := range tests {
		got, err := ParseURI(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseURI(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		if got.String() != tt.str {
			t.Errorf("ParseURI(%q).String() = %q, want %q", tt.in, got.String(), tt.str)
		}
		if again, err := ParseURI(got.String()); err != nil || again != got {
			t.Errorf("ParseURI(%q) = %+v, %v; want %+v", got.String(), again, err, got)
		}
	}

	bad := []struct{ in, says string }{
		{"", "must start with stun: or turn: or turns:"},
		{"http://turn.example.com", "must start with"},
		{"stuns:turn.example.com", "must start with"},
		{"turn://turn.example.com:3478", "no // after turn:"},
		{"turn:", "no host"},
		{"turn::3478", "no host"},
		{"turn:turn.example.com:0", "port \"0\""},
		{"turn:turn.example.com:65536", "port \"65536\""},
		{"turn:turn.example.com:34x", "port \"34x\""},
		{"turn:turn.example.com:", "port \"\""},
		{"turn:turn.example.com?transport=sctp", "only transport=udp or transport=tcp"},
		{"turn:turn.example.com?foo=bar", "only transport=udp or transport=tcp"},
		{"stun:turn.example.com?transport=udp", "a STUN URL takes no ?query"},
		{"turns:turn.example.com?transport=udp", "TURN over DTLS, which is not supported"},
		{"turn:2001:db8::1", "IPv6 addresses go in brackets"},
		{"turn:[2001:db8::1", "[ without ]"},
		{"turn:[192.0.2.1]:3478", "is not an IPv6 address"},
		{"turn:turn example.com", "is not a host name"},
		{"turn:user@turn.example.com", "is not a host name"},
	}
	for _, tt := range bad {
		_, err := ParseURI(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.says) {
			t.Errorf("ParseURI(%q): error %v, want one saying %q", tt.in, err, tt.says)
		}
	}
}

func TestProbe(t *testing.T) {
	t.Parallel()
	const secret = "fleet-secret"
	s := testenv.Coturn(t, secret)
	withTLS := WithTLSConfig(&tls.Config{RootCAs: s.RootCAs})
	ctx := context.Background()
	loopback := netip.MustParseAddr("127.0.0.1")

	turnURIs := []URI{
		mustParse(t, "turn:"+s.Addr),
		mustParse(t, "turn:"+s.Addr+"?transport=tcp"),
		mustParse(t, "turns:"+s.TLSAddr+"?transport=tcp"),
	}

	var udpRelay netip.AddrPort
	t.Run("right secret: STUN and an allocation", func(t *testing.T) {
		for _, u := range turnURIs {
			res := Probe(ctx, u, secret, withTLS, WithTimeout(2*time.Second))
			if !res.OK() || !res.STUNOK || !res.AllocateOK || res.Err != nil {
				t.Errorf("%s: %+v", u, res)
				continue
			}
			if res.URI != u || res.Mapped.Addr() != loopback || res.Relayed.Addr() != loopback || res.Relayed.Port() == 0 || res.RTT <= 0 {
				t.Errorf("%s: %+v", u, res)
			}
			if u.Transport == "udp" {
				udpRelay = res.Relayed
			}
		}
	})

	// Over UDP only the Refresh with lifetime 0 frees the allocation (over
	// TCP and TLS, closing the connection does too): its relay port is free
	// again at coturn's next timer tick, within a second, not after the
	// allocation's lifetime of 10 minutes.
	t.Run("the allocation is freed", func(t *testing.T) {
		if !udpRelay.IsValid() {
			t.Skip("no allocation over UDP")
		}
		deadline := time.Now().Add(3 * time.Second)
		for {
			pc, err := net.ListenPacket("udp", udpRelay.String())
			if err == nil {
				pc.Close()
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the allocation's relay port is still taken after the probe: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("wrong secret: STUN answers, the allocation is refused", func(t *testing.T) {
		for _, u := range turnURIs {
			res := Probe(ctx, u, "not-the-fleet-secret", withTLS, WithTimeout(2*time.Second))
			if res.OK() || !res.STUNOK || res.AllocateOK || !errors.Is(res.Err, ErrCredentialsRefused) {
				t.Errorf("%s: %+v", u, res)
				continue
			}
			for _, says := range []string{"refuses the credentials", "static-auth-secret", "401"} {
				if !strings.Contains(res.Err.Error(), says) {
					t.Errorf("%s: error %q does not say %q", u, res.Err, says)
				}
			}
			if strings.Contains(res.Err.Error(), secret) {
				t.Errorf("%s: error %q shows the secret", u, res.Err)
			}
		}
	})

	t.Run("expired credentials are refused, as with a clock far behind", func(t *testing.T) {
		behind := WithClock(func() time.Time { return time.Now().Add(-2 * time.Hour) })
		res := Probe(ctx, turnURIs[0], secret, behind, WithTimeout(2*time.Second))
		if res.OK() || !errors.Is(res.Err, ErrCredentialsRefused) {
			t.Errorf("%+v", res)
		}
	})

	t.Run("stun: a Binding request only", func(t *testing.T) {
		u := mustParse(t, "stun:"+s.Addr)
		res := Probe(ctx, u, "", WithTimeout(2*time.Second))
		if !res.OK() || !res.STUNOK || res.AllocateOK || res.Relayed.IsValid() || res.Mapped.Addr() != loopback {
			t.Errorf("%+v", res)
		}
	})

	t.Run("no secret for turn", func(t *testing.T) {
		res := Probe(ctx, turnURIs[0], "")
		if res.OK() || res.Err == nil || !strings.Contains(res.Err.Error(), "no TURN shared secret") {
			t.Errorf("%+v", res)
		}
	})

	t.Run("turns with an untrusted certificate", func(t *testing.T) {
		res := Probe(ctx, turnURIs[2], secret, WithTimeout(2*time.Second))
		if res.OK() || res.STUNOK || errors.Is(res.Err, ErrUnreachable) || !strings.Contains(res.Err.Error(), "TLS handshake") {
			t.Errorf("%+v", res)
		}
	})

	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(ctx)
		cancel()
		res := Probe(ctx, turnURIs[1], secret)
		if res.OK() || errors.Is(res.Err, ErrUnreachable) || !errors.Is(res.Err, context.Canceled) {
			t.Errorf("%+v", res)
		}
	})
}

func TestProbeStoppedServer(t *testing.T) {
	t.Parallel()
	s := testenv.Coturn(t, "fleet-secret")
	uris := []URI{
		mustParse(t, "stun:"+s.Addr),
		mustParse(t, "turn:"+s.Addr),
		mustParse(t, "turn:"+s.Addr+"?transport=tcp"),
		mustParse(t, "turns:"+s.TLSAddr),
	}
	s.Stop()
	const timeout = time.Second
	for _, u := range uris {
		start := time.Now()
		res := Probe(context.Background(), u, s.Secret, WithTimeout(timeout), WithTLSConfig(&tls.Config{RootCAs: s.RootCAs}))
		if took := time.Since(start); took > timeout+probeSlack {
			t.Errorf("%s: the probe took %s, over its timeout of %s", u, took, timeout)
		}
		if res.OK() || res.STUNOK || res.AllocateOK || !errors.Is(res.Err, ErrUnreachable) ||
			!strings.Contains(res.Err.Error(), "unreachable") {
			t.Errorf("%s: %+v", u, res)
		}
	}
}

// probeSlack is how much longer than its timeout a probe may take here: a
// loaded CI machine schedules late, and a probe that ignored its timeout
// would retransmit for STUN's 39.5 s.
const probeSlack = 2 * time.Second

// A UDP server that never answers (packets dropped on the way): the probe
// retransmits its Binding request and gives up at its timeout.
func TestProbeSilentServer(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var got atomic.Int32
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()

	const timeout = 600 * time.Millisecond
	start := time.Now()
	res := Probe(context.Background(), mustParse(t, "turn:"+pc.LocalAddr().String()), "fleet-secret", WithTimeout(timeout))
	took := time.Since(start)
	if res.OK() || !errors.Is(res.Err, ErrUnreachable) || !errors.Is(res.Err, context.DeadlineExceeded) ||
		!strings.Contains(res.Err.Error(), "no response") {
		t.Errorf("%+v", res)
	}
	if took < timeout || took > timeout+probeSlack {
		t.Errorf("the probe took %s, want its timeout of %s", took, timeout)
	}
	// Sent at 0, 250 ms and 750 ms: two within the timeout.
	if n := got.Load(); n < 2 {
		t.Errorf("the server got %d Binding requests, want retransmissions", n)
	}
}

// An open relay, emulated: a STUN server that allocates without asking for
// credentials (coturn cannot be started so by testenv.Coturn). The probe
// frees the allocation and fails: the server ignores the shared secret.
func TestProbeOpenRelay(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var freed atomic.Bool
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if req.Decode() != nil {
				continue
			}
			peer := from.(*net.UDPAddr)
			setters := []stun.Setter{stun.NewTransactionIDSetter(req.TransactionID), stun.NewType(req.Type.Method, stun.ClassSuccessResponse)}
			switch req.Type.Method {
			case stun.MethodBinding:
				setters = append(setters, &stun.XORMappedAddress{IP: peer.IP, Port: peer.Port})
			case stun.MethodAllocate:
				setters = append(setters, relayedAddress{IP: net.IPv4(192, 0, 2, 7), Port: 50000})
			case stun.MethodRefresh:
				if v, err := req.Get(stun.AttrLifetime); err == nil && string(v) == "\x00\x00\x00\x00" {
					freed.Store(true)
				}
			}
			pc.WriteTo(stun.MustBuild(setters...).Raw, from)
		}
	}()

	res := Probe(context.Background(), mustParse(t, "turn:"+pc.LocalAddr().String()), "fleet-secret", WithTimeout(time.Second))
	if res.OK() || !res.STUNOK || !res.AllocateOK || res.Relayed != netip.MustParseAddrPort("192.0.2.7:50000") ||
		res.Err == nil || !strings.Contains(res.Err.Error(), "open relay") {
		t.Errorf("%+v", res)
	}
	if !freed.Load() {
		t.Error("the probe did not free the allocation")
	}
}

// relayedAddress sets an XOR-RELAYED-ADDRESS.
type relayedAddress stun.XORMappedAddress

func (a relayedAddress) AddTo(m *stun.Message) error {
	return stun.XORMappedAddress(a).AddToAs(m, stun.AttrXORRelayedAddress)
}

func mustParse(t *testing.T, s string) URI {
	t.Helper()
	u, err := ParseURI(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
