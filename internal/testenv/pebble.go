package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// PebbleVersion is the pebble release .ci/run installs.
const PebbleVersion = "v2.10.3"

// PebbleServer is a Let's Encrypt pebble ACME test server of the calling
// test's own.
type PebbleServer struct {
	// Directory is the ACME directory URL, https://127.0.0.1:PORT/dir (a
	// proxy of the test's, see finalizeLocation).
	Directory string
	// CAFile is the PEM certificate pebble's own HTTPS (Directory) is served
	// with: give it to the ACME client as SSL_CERT_FILE.
	CAFile string
	// dirRoots trusts Directory; manage is the management API's URL.
	dirRoots *x509.CertPool
	manage   string
	keyFile  string
}

// PebbleOpts configures the server's validation authority.
type PebbleOpts struct {
	// AlwaysValid skips challenge validation (PEBBLE_VA_ALWAYS_VALID=1):
	// every authorization is valid once the client asks for it.
	AlwaysValid bool
	// HTTPPort and TLSPort are where pebble validates HTTP-01 and
	// TLS-ALPN-01 challenges (the client's listeners), on the address the
	// domain resolves to; 0: pebble's defaults (5002, 5001).
	HTTPPort, TLSPort int
}

var pebbleSeq atomic.Int64

// Pebble starts pebble for the calling test and kills it when the test
// ends. It listens on 127.0.0.1 only. Without pebble (go install
// github.com/letsencrypt/pebble/v2/cmd/pebble@PebbleVersion) the test skips
// (fails on CI).
func Pebble(t testing.TB, o PebbleOpts) PebbleServer {
	t.Helper()
	requireMain(t)
	bin := findGoBin("pebble")
	if bin == "" {
		unavailable(t, fmt.Errorf("testenv: pebble %w: go install github.com/letsencrypt/pebble/v2/cmd/pebble@%s (or run .ci/run)", errNotInstalled, PebbleVersion))
		return PebbleServer{}
	}
	s, p, err := startPebble(bin, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	cert, err := tls.LoadX509KeyPair(s.CAFile, s.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s.Directory = finalizeLocation(t, strings.TrimSuffix(s.Directory, "/dir"), s.dirRoots, cert) + "/dir"
	return s
}

// Roots returns the root certificate pebble signs the certificates it
// issues with (a new one each start), from its management API.
func (s PebbleServer) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.dirRoots}}}
	resp, err := c.Get(s.manage + "/roots/0")
	if err != nil {
		t.Fatalf("testenv: pebble roots: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("testenv: pebble roots: %s %v", resp.Status, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("testenv: pebble roots: no PEM certificate in %q", b)
	}
	return pool
}

// findGoBin finds a program in PATH or in GOPATH/bin (go install's) and
// returns a copy the server user can run.
func findGoBin(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		gopath := os.Getenv("GOPATH")
		if gopath == "" {
			home, _ := os.UserHomeDir()
			gopath = filepath.Join(home, "go")
		}
		if p = filepath.Join(gopath, "bin", name); !isExecutable(p) {
			return ""
		}
	}
	if c, err := serverCopy(p); err == nil {
		return c
	}
	return p
}

// startPebble starts pebble and waits until it serves its directory. pebble
// has no graceful stop (SIGTERM ends it with that signal), so the caller
// kills it when the test ends rather than Main stopping it.
func startPebble(bin string, o PebbleOpts) (PebbleServer, *process, error) {
	name := "pebble-" + strconv.FormatInt(pebbleSeq.Add(1), 10)
	dir, err := makeDir(name)
	if err != nil {
		return PebbleServer{}, nil, err
	}
	port, err := freePort()
	if err != nil {
		return PebbleServer{}, nil, err
	}
	mport, err := freePort()
	if err != nil {
		return PebbleServer{}, nil, err
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	roots, err := writeCert(certFile, keyFile)
	if err != nil {
		return PebbleServer{}, nil, err
	}
	if err := os.Chmod(keyFile, 0o644); err != nil { // the server user reads it; the directory is private
		return PebbleServer{}, nil, fmt.Errorf("testenv: %w", err)
	}
	httpPort, tlsPort := o.HTTPPort, o.TLSPort
	if httpPort == 0 {
		httpPort = 5002
	}
	if tlsPort == 0 {
		tlsPort = 5001
	}
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  "127.0.0.1:" + strconv.Itoa(port),
		"managementListenAddress":        "127.0.0.1:" + strconv.Itoa(mport),
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"profiles":                       map[string]any{"default": map[string]any{"description": "testenv", "validityPeriod": 7776000}},
	}}
	b, _ := json.Marshal(conf)
	confFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(confFile, b, 0o644); err != nil {
		return PebbleServer{}, nil, fmt.Errorf("testenv: %w", err)
	}
	// pebble takes its validation switches from the environment only.
	env := []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"}
	if o.AlwaysValid {
		env = append(env, "PEBBLE_VA_ALWAYS_VALID=1")
	}
	args := append(env, bin, "-config", confFile)
	s := PebbleServer{
		Directory: "https://127.0.0.1:" + strconv.Itoa(port) + "/dir",
		CAFile:    certFile,
		keyFile:   keyFile,
		dirRoots:  roots,
		manage:    "https://127.0.0.1:" + strconv.Itoa(mport),
	}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	ready := func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Directory, nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", s.Directory, resp.Status)
		}
		return nil
	}
	envBin, err := exec.LookPath("env")
	if err != nil {
		return PebbleServer{}, nil, fmt.Errorf("testenv: pebble: %w", err)
	}
	p, err := launch(name, dir, syscall.SIGTERM, envBin, args...)
	if err != nil {
		return PebbleServer{}, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		probeCtx, cancelProbe := context.WithTimeout(ctx, time.Second)
		notReady := ready(probeCtx)
		cancelProbe()
		if notReady == nil {
			return s, p, nil
		}
		select {
		case <-p.done:
			return PebbleServer{}, nil, p.failure(fmt.Errorf("exited before it was ready: %s", p.cmd.ProcessState))
		case <-ctx.Done():
			p.kill()
			return PebbleServer{}, nil, p.failure(fmt.Errorf("not ready: %w (last attempt: %v)", ctx.Err(), notReady))
		case <-tick.C:
		}
	}
}

// finalizeLocation is a reverse proxy in front of pebble's ACME API that
// restores the Location header of finalize responses: pebble 2.9 and later
// leave it out on purpose (letsencrypt/pebble#508, it is optional in RFC
// 8555), golang.org/x/crypto/acme (autocert) waits on the order at that
// Location, and Let's Encrypt's production server (Boulder) sends it.
// pebble builds its URLs from the request's Host, so they name the proxy.
func finalizeLocation(t testing.TB, target string, roots *x509.CertPool, cert tls.Certificate) string {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host
		},
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
		ModifyResponse: func(resp *http.Response) error {
			id, ok := strings.CutPrefix(resp.Request.URL.Path, "/finalize-order/")
			if ok && resp.Header.Get("Location") == "" && resp.StatusCode == http.StatusOK {
				resp.Header.Set("Location", "https://"+resp.Request.Host+"/my-order/"+id)
			}
			return nil
		},
	}
	srv := httptest.NewUnstartedServer(proxy)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}
