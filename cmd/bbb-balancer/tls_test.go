package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// writeSelfSigned writes a self-signed certificate for 127.0.0.1 named cn
// and its key, and returns the certificate.
func writeSelfSigned(t *testing.T, certFile, keyFile, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// peerCN connects over TLS, trusting nothing (the test checks the name
// itself), and returns the leaf's common name.
func peerCN(t *testing.T, addr, serverName string) string {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: serverName})
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

func getWith(t *testing.T, c *http.Client, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var adminAddrRe = regexp.MustCompile(`msg="bbb-balancer listening" .*admin=(http://\S+)`)

// TestTLSFilesAndAdminListener serves HTTPS from --tls-cert/--tls-key,
// replaces the files as certbot would and sees the new certificate on the
// next connection, and checks that --admin-listen takes the admin API and
// /metrics off the public port.
func TestTLSFilesAndAdminListener(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeSelfSigned(t, certFile, keyFile, "first")
	bal := testenv.StartBalancer(t, testenv.BalancerOpts{Secret: lbSecret, AgentToken: agentToken, AdminToken: adminToken,
		Args: []string{"--tls-cert", certFile, "--tls-key", keyFile, "--admin-listen", "127.0.0.1:0"}})
	if !strings.HasPrefix(bal.Ready, "https://") {
		t.Fatalf("ready URL %q is not https", bal.Ready)
	}
	addr := strings.TrimPrefix(bal.Ready, "https://")
	pool := x509.NewCertPool()
	pool.AddCert(first)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if code, body := getWith(t, c, bal.Ready+"/healthz", ""); code != http.StatusOK {
		t.Fatalf("healthz over TLS: %d %s", code, body)
	}

	// The public port no longer carries the admin API nor /metrics.
	for _, path := range []string{"/admin/v1/servers", "/metrics", "/scalelite/api/getServers"} {
		if code, body := getWith(t, c, bal.Ready+path, adminToken); code == http.StatusOK {
			t.Errorf("public port serves %s with --admin-listen: %d %.200s", path, code, body)
		}
	}
	m := adminAddrRe.FindStringSubmatch(bal.Output())
	if m == nil {
		t.Fatalf("no admin address in the ready line:\n%s", bal.Output())
	}
	admin := m[1]
	if !strings.HasPrefix(admin, "http://127.0.0.1:") {
		t.Errorf("admin listener %s is not on loopback", admin)
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	if code, _ := getWith(t, plain, admin+"/admin/v1/servers", ""); code != http.StatusUnauthorized {
		t.Errorf("admin API without the token on the admin listener: %d, want 401", code)
	}
	if code, body := getWith(t, plain, admin+"/admin/v1/servers", adminToken); code != http.StatusOK {
		t.Errorf("admin API on the admin listener: %d %s", code, body)
	}
	if code, body := getWith(t, plain, admin+"/metrics", ""); code != http.StatusOK || !strings.Contains(body, "bbb_balancer_") {
		t.Errorf("/metrics on the admin listener: %d %.200s", code, body)
	}
	// The CLI reaches the admin API through --admin-listen's address.
	bin := testenv.Build(t, testenv.BalancerPkg)[0]
	if res := testenv.Run(t, nil, bin, "--url", admin, "--admin-token", adminToken, "status"); res.Code != 0 {
		t.Errorf("status through the admin listener: %s", res)
	}

	// certbot renews: a new pair in place of the old one. A pair that does
	// not load (the key written before the certificate) keeps the old one.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	bump := time.Now().Add(time.Minute)
	if err := os.Chtimes(certFile, bump, bump); err != nil {
		t.Fatal(err)
	}
	if cn := peerCN(t, addr, ""); cn != "first" {
		t.Errorf("a broken pair replaced the served certificate: got %q", cn)
	}
	writeSelfSigned(t, certFile, keyFile, "second")
	bump = bump.Add(time.Minute)
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, bump, bump); err != nil {
			t.Fatal(err)
		}
	}
	if cn := peerCN(t, addr, ""); cn != "second" {
		t.Errorf("after the renewal the balancer serves %q, want the new certificate", cn)
	}
	testenv.Eventually(t, 10*time.Second, "the failed and the good reload logged", func() bool {
		return strings.Contains(bal.Output(), "TLS certificate reloaded") && strings.Contains(bal.Output(), "does not load")
	})
}

// TestMetricsOnPublicPortNeedToken: without --admin-listen, /metrics on
// the one port needs the admin token.
func TestMetricsOnPublicPortNeedToken(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	bal := testenv.StartBalancer(t, testenv.BalancerOpts{Secret: lbSecret, AgentToken: agentToken, AdminToken: adminToken})
	c := &http.Client{Timeout: 10 * time.Second}
	if code, _ := getWith(t, c, bal.Ready+"/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d, want 401", code)
	}
	if code, body := getWith(t, c, bal.Ready+"/metrics", adminToken); code != http.StatusOK || !strings.Contains(body, "bbb_balancer_") {
		t.Errorf("/metrics with the admin token: %d %.200s", code, body)
	}
}

// TestACME gets the balancer's certificate from a real ACME server
// (pebble) and checks it with a real TLS client that trusts pebble's root
// only. pebble runs with PEBBLE_VA_ALWAYS_VALID=1: its validation authority
// would resolve the name through DNS, and autocert refuses names without a
// dot such as "localhost", so no name reaches the loopback balancer here.
func TestACME(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries and pebble")
	}
	pb := testenv.Pebble(t, testenv.PebbleOpts{AlwaysValid: true})
	port := testenv.FreePort(t)
	bal := testenv.StartBalancer(t, testenv.BalancerOpts{Secret: lbSecret, AgentToken: agentToken, AdminToken: adminToken,
		Listen: "127.0.0.1:" + strconv.Itoa(port),
		Args: []string{"--acme-domain", "lb.example.com", "--acme-email", "ops@example.com", "--acme-ca", pb.Directory,
			"--acme-cache", t.TempDir(), "--acme-http-listen", "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))},
		Env: []string{"SSL_CERT_FILE=" + pb.CAFile}})
	roots := pb.Roots(t)
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "lb.example.com"}}}
	// The first handshake waits for the order: account, authorization, issuance.
	url := "https://127.0.0.1:" + strconv.Itoa(port) + "/healthz"
	if code, body := getWith(t, c, url, ""); code != http.StatusOK {
		t.Fatalf("healthz over the ACME certificate: %d %s\n%s", code, body, bal.Output())
	}
	// A name the balancer was not told to serve gets no certificate.
	other := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "other.example.com"}}}
	if resp, err := other.Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("a handshake for a name outside --acme-domain succeeded")
	}
}

// TestAgentTrustsBalancerCA: bbb-agent registers with an HTTPS balancer
// whose certificate only --balancer-ca vouches for.
func TestAgentTrustsBalancerCA(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs binaries")
	}
	bins := testenv.Build(t, testenv.BalancerPkg, testenv.SimPkg, "github.com/bbb-agent/bbb-agent/cmd/bbb-agent")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca := writeSelfSigned(t, certFile, keyFile, "lb")
	bal := testenv.StartBalancer(t, testenv.BalancerOpts{Bin: bins[0], Secret: lbSecret, AgentToken: agentToken, AdminToken: adminToken,
		Args: []string{"--tls-cert", certFile, "--tls-key", keyFile}})
	const simSecret = "sim-secret-0123456789abcdef"
	sim := testenv.StartSim(t, testenv.SimOpts{Bin: bins[1], Secret: simSecret})
	state := t.TempDir()
	testenv.StartAgent(t, testenv.AgentOpts{Bin: bins[2], Args: []string{"run", "--admin-socket", filepath.Join(state, "a.sock"),
		"--state-dir", filepath.Join(state, "state"), "--balancer-url", bal.Ready, "--balancer-ca", certFile, "--agent-token", agentToken,
		"--bbb-url", sim.Ready, "--bbb-secret", simSecret, "--node-name", "tls1", "--report-interval", "200ms", "--logind=false",
		"--recordings-dir", t.TempDir()}})
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	testenv.Eventually(t, 20*time.Second, "the agent registered over HTTPS", func() bool {
		_, body := getWith(t, c, bal.Ready+"/admin/v1/servers", adminToken)
		return strings.Contains(body, `"tls1"`) && strings.Contains(body, `"online":true`)
	})
}
