package testenv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// CoturnServer is a coturn TURN server of the calling test's own.
type CoturnServer struct {
	// Addr is "127.0.0.1:PORT": STUN and TURN over UDP and TCP.
	Addr string
	// TLSAddr is "127.0.0.1:PORT": STUN and TURN over TLS (turns:).
	TLSAddr string
	// RootCAs trusts the server's self-signed TLS certificate, made for
	// 127.0.0.1 and localhost.
	RootCAs *x509.CertPool
	// Secret is the server's static-auth-secret (use-auth-secret, the TURN
	// REST API scheme); Realm its realm.
	Secret string
	Realm  string
	// Stop stops the server now, as a TURN node that dies; the test goes
	// on. It runs at the end of the test too; a second call does nothing.
	Stop func()
}

// Coturn starts a coturn server (turnserver) for the calling test, with
// secret as its static-auth-secret, and stops it when the test ends. It
// runs in the foreground as the server user, listens on 127.0.0.1 only (a
// free port for UDP and TCP, another for TLS), relays from 127.0.0.1 on a
// small port range, allows loopback peers, and keeps no database outside
// this test binary's directory. Coturn returns once the server answers a
// STUN Binding request over UDP, TCP and TLS. Without turnserver the test
// skips (fails on CI).
func Coturn(t testing.TB, secret string) CoturnServer {
	t.Helper()
	requireMain(t)
	if secret == "" {
		t.Fatal("testenv: Coturn needs a secret")
	}
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		unavailable(t, fmt.Errorf("testenv: coturn %w: no turnserver in PATH; run .ci/run or apt-get install coturn", errNotInstalled))
		return CoturnServer{}
	}
	s, p, err := startCoturn(bin, secret)
	if err != nil {
		t.Fatal(err)
	}
	s.Stop = stopWithTest(t, p, stopCoturn)
	return s
}

const coturnRealm = "turn.test"

var coturnSeq atomic.Int64

// coturnRelayPorts is the range relay ports come from: below Linux's
// ephemeral ports, so they do not collide with freePort's.
const (
	coturnRelayFirst = 20000
	coturnRelayRange = 10000
	coturnRelayPorts = 100 // per server
)

func startCoturn(bin, secret string) (CoturnServer, *process, error) {
	name := "coturn-" + strconv.FormatInt(coturnSeq.Add(1), 10)
	dir, err := makeDir(name)
	if err != nil {
		return CoturnServer{}, nil, err
	}
	port, err := bindPort()
	if err != nil {
		return CoturnServer{}, nil, err
	}
	tlsPort, err := bindPort()
	for err == nil && tlsPort == port {
		tlsPort, err = bindPort()
	}
	if err != nil {
		return CoturnServer{}, nil, err
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	roots, err := writeCert(certFile, keyFile)
	if err != nil {
		return CoturnServer{}, nil, err
	}
	minPort := coturnRelayFirst + mrand.IntN(coturnRelayRange/coturnRelayPorts)*coturnRelayPorts

	// The secret goes in the configuration file, not on the command line
	// where ps would show it. -c also keeps coturn from reading
	// /etc/turnserver.conf.
	conf := fmt.Sprintf(`listening-ip=127.0.0.1
relay-ip=127.0.0.1
listening-port=%d
tls-listening-port=%d
min-port=%d
max-port=%d
use-auth-secret
static-auth-secret=%s
realm=%s
cert=%s
pkey=%s
no-dtls
no-rfc5780
no-cli
allow-loopback-peers
relay-threads=1
log-file=stdout
simple-log
userdb=%s
pidfile=%s
`, port, tlsPort, minPort, minPort+coturnRelayPorts-1, secret, coturnRealm, certFile, keyFile,
		filepath.Join(dir, "turndb"), filepath.Join(dir, "turnserver.pid"))
	confFile := filepath.Join(dir, "turnserver.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		return CoturnServer{}, nil, fmt.Errorf("testenv: %w", err)
	}
	if err := chownToServerUser(confFile); err != nil {
		return CoturnServer{}, nil, err
	}

	s := CoturnServer{
		Addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		TLSAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort)),
		RootCAs: roots,
		Secret:  secret,
		Realm:   coturnRealm,
	}
	ready := func(ctx context.Context) error {
		for _, c := range []struct{ network, addr string }{{"udp", s.Addr}, {"tcp", s.Addr}, {"tls", s.TLSAddr}} {
			if err := stunBinding(ctx, c.network, c.addr, roots); err != nil {
				return err
			}
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	// coturn has no orderly shutdown: SIGTERM ends it at once, as when
	// systemd stops it.
	if err := start(ctx, name, dir, syscall.SIGTERM, ready, bin, "-c", confFile); err != nil {
		return CoturnServer{}, nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range procs {
		if p.name == name {
			return s, p, nil
		}
	}
	return CoturnServer{}, nil, fmt.Errorf("testenv: %s started but is not among the running servers", name)
}

// stopCoturn ends a coturn that runs, by SIGTERM, and kills its process
// group if it is still there after stopTimeout.
func stopCoturn(p *process) error {
	select {
	case <-p.done:
		return p.failure(fmt.Errorf("exited while the test ran: %s", p.cmd.ProcessState))
	default:
	}
	if err := p.cmd.Process.Signal(p.sig); err != nil {
		return p.failure(err)
	}
	select {
	case <-p.done:
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == p.sig {
			return nil
		}
		return p.failure(fmt.Errorf("after %s: %s", p.sig, p.cmd.ProcessState))
	case <-time.After(stopTimeout):
		p.kill()
		return p.failure(fmt.Errorf("did not stop within %s of %s; killed", stopTimeout, p.sig))
	}
}

// writeCert writes a fresh self-signed certificate for 127.0.0.1 and
// localhost and its key, readable by the server user only, and returns a
// pool that trusts it.
func writeCert(certFile, keyFile string) (*x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "bbb-agent testenv coturn"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("testenv: %w", err)
	}
	for path, block := range map[string]*pem.Block{
		certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile:  {Type: "PRIVATE KEY", Bytes: pkcs8},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, fmt.Errorf("testenv: %w", err)
		}
		if err := chownToServerUser(path); err != nil {
			return nil, err
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return roots, nil
}

// STUN (RFC 5389) as far as a readiness check needs it.
const (
	stunMagicCookie     = 0x2112A442
	stunBindingRequest  = 0x0001
	stunBindingResponse = 0x0101
	stunHeaderSize      = 20
)

// stunBinding sends one STUN Binding request over network ("udp", "tcp" or
// "tls") and waits for its success response.
func stunBinding(ctx context.Context, network, addr string, roots *x509.CertPool) error {
	var d net.Dialer
	var c net.Conn
	var err error
	if network == "tls" {
		td := tls.Dialer{NetDialer: &d, Config: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}}
		c, err = td.DialContext(ctx, "tcp", addr)
	} else {
		c, err = d.DialContext(ctx, network, addr)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	if deadline, ok := ctx.Deadline(); ok {
		c.SetDeadline(deadline)
	}
	req := make([]byte, stunHeaderSize)
	binary.BigEndian.PutUint16(req[0:], stunBindingRequest)
	binary.BigEndian.PutUint32(req[4:], stunMagicCookie)
	rand.Read(req[8:stunHeaderSize])
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("STUN Binding over %s to %s: %w", network, addr, err)
	}
	resp := make([]byte, 1500)
	if network == "udp" {
		n, err := c.Read(resp)
		if err != nil {
			return fmt.Errorf("STUN Binding over %s to %s: %w", network, addr, err)
		}
		resp = resp[:n]
	} else if _, err := io.ReadFull(c, resp[:stunHeaderSize]); err != nil {
		return fmt.Errorf("STUN Binding over %s to %s: %w", network, addr, err)
	}
	if len(resp) < stunHeaderSize || binary.BigEndian.Uint16(resp) != stunBindingResponse ||
		!bytes.Equal(resp[4:stunHeaderSize], req[4:stunHeaderSize]) {
		return fmt.Errorf("STUN Binding over %s to %s: not a success response to the request: % x",
			network, addr, resp[:min(len(resp), stunHeaderSize)])
	}
	return nil
}
