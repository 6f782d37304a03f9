package testenv

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BindKey is a TSIG key the BIND server knows.
type BindKey struct {
	Name      string // with a trailing dot, as TSIG signers want it
	Secret    string // base64
	Algorithm string // BIND's name: hmac-sha256, hmac-sha1
}

// BindServer is one zone on the BIND 9 server that this test binary shares.
type BindServer struct {
	// Addr is "127.0.0.1:PORT", answering over UDP and TCP.
	Addr string
	// Zone is a zone of its own for the calling test, "z<N>.test.": only an
	// SOA, an NS and the name server's A record. It is deleted when the test
	// ends.
	Zone string
	// KeyName, KeySecret (base64) and Algorithm (hmac-sha256) are the TSIG
	// key that may update Zone.
	KeyName   string
	KeySecret string
	Algorithm string
	// SHA1 may update Zone too, with hmac-sha1, as old servers require.
	SHA1 BindKey
	// Other is a key the server knows but that may not update Zone.
	Other BindKey
}

// Key is the hmac-sha256 key that may update the zone.
func (s BindServer) Key() BindKey {
	return BindKey{Name: s.KeyName, Secret: s.KeySecret, Algorithm: s.Algorithm}
}

// Bind returns a fresh zone, allowing dynamic updates signed with the
// server's keys, on a BIND 9 server (named) that this test binary shares.
// The server starts on first use in the foreground (named -g), without a
// chroot, as the server user, on a free 127.0.0.1 port; zones are added and
// deleted while it runs (rndc addzone/delzone), their files and journals in
// this test binary's directory. Without named and rndc the test skips (fails
// on CI).
func Bind(t testing.TB) BindServer {
	t.Helper()
	requireMain(t)
	n, err := named()
	if errors.Is(err, errNotInstalled) {
		unavailable(t, err)
		return BindServer{}
	}
	if err != nil {
		t.Fatal(err)
	}
	zone, err := n.addZone()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.rndc("delzone", "-clean", strings.TrimSuffix(zone, ".")); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return BindServer{
		Addr:      n.addr,
		Zone:      zone,
		KeyName:   n.update.Name,
		KeySecret: n.update.Secret,
		Algorithm: n.update.Algorithm,
		SHA1:      n.sha1,
		Other:     n.other,
	}
}

// A bindServer is the running named.
type bindServer struct {
	dir     string // its directory: configuration, zone files, journals
	addr    string
	rndcBin string
	rndcCfg string

	update, sha1, other BindKey
	zones               atomic.Int64
}

var named = sync.OnceValues(startBind)

func startBind() (*bindServer, error) {
	namedBin, rndcBin := findBind("named"), findBind("rndc")
	if namedBin == "" || rndcBin == "" {
		return nil, fmt.Errorf("testenv: BIND 9 %w: no named and rndc in PATH or %s; run .ci/run or apt-get install bind9 bind9-dnsutils",
			errNotInstalled, bindSbin)
	}
	dir, err := makeDir("bind")
	if err != nil {
		return nil, err
	}
	port, err := bindPort()
	if err != nil {
		return nil, err
	}
	ctlPort, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &bindServer{dir: dir, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), rndcBin: rndcBin,
		rndcCfg: filepath.Join(dir, "rndc.conf")}
	var rndcKey BindKey
	for _, k := range []struct {
		key        *BindKey
		name, algo string
	}{
		{&rndcKey, "rndc-key.", "hmac-sha256"},
		{&s.update, "bbb-agent-test-update.", "hmac-sha256"},
		{&s.sha1, "bbb-agent-test-sha1.", "hmac-sha1"},
		{&s.other, "bbb-agent-test-other.", "hmac-sha256"},
	} {
		secret := make([]byte, 32)
		rand.Read(secret)
		*k.key = BindKey{Name: k.name, Secret: base64.StdEncoding.EncodeToString(secret), Algorithm: k.algo}
	}

	var conf strings.Builder
	fmt.Fprintf(&conf, `options {
	directory %q;
	listen-on port %d { 127.0.0.1; };
	listen-on-v6 { none; };
	pid-file none;
	session-keyfile none;
	managed-keys-directory %q;
	recursion no;
	dnssec-validation no;
	notify no;
	allow-transfer { none; };
	allow-new-zones yes;
};
controls {
	inet 127.0.0.1 port %d allow { 127.0.0.1; } keys { %q; };
};
`, dir, port, dir, ctlPort, strings.TrimSuffix(rndcKey.Name, "."))
	for _, k := range []BindKey{rndcKey, s.update, s.sha1, s.other} {
		fmt.Fprintf(&conf, "key %q { algorithm %s; secret %q; };\n", strings.TrimSuffix(k.Name, "."), k.Algorithm, k.Secret)
	}
	rndcConf := fmt.Sprintf("key %q { algorithm %s; secret %q; };\noptions { default-key %q; default-server 127.0.0.1; default-port %d; };\n",
		strings.TrimSuffix(rndcKey.Name, "."), rndcKey.Algorithm, rndcKey.Secret, strings.TrimSuffix(rndcKey.Name, "."), ctlPort)
	namedConf := filepath.Join(dir, "named.conf")
	for path, text := range map[string]string{namedConf: conf.String(), s.rndcCfg: rndcConf} {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			return nil, fmt.Errorf("testenv: %w", err)
		}
		if err := chownToServerUser(path); err != nil {
			return nil, err
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	// SIGTERM is named's orderly shutdown.
	err = start(ctx, "named", dir, syscall.SIGTERM, s.ready, namedBin, "-g", "-c", namedConf)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// bindSbin is where Debian installs named and rndc, outside an unprivileged
// user's PATH.
const bindSbin = "/usr/sbin"

// findBind finds a BIND program in PATH or else in bindSbin; "" if neither.
func findBind(name string) string {
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	if path := filepath.Join(bindSbin, name); isExecutable(path) {
		return path
	}
	return ""
}

// bindPort returns a port on 127.0.0.1 that was free a moment ago for both
// TCP and UDP.
func bindPort() (int, error) {
	for range 20 {
		port, err := freePort()
		if err != nil {
			return 0, err
		}
		udp, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			udp.Close()
			return port, nil
		}
	}
	return 0, errors.New("testenv: no port on 127.0.0.1 free for both TCP and UDP")
}

// ready holds once named answers over UDP and TCP and takes rndc commands.
func (s *bindServer) ready(ctx context.Context) error {
	for _, network := range []string{"udp", "tcp"} {
		if _, err := s.query(ctx, network, ".", dns.TypeSOA); err != nil {
			return err
		}
	}
	return s.rndc("status")
}

// query asks named one question; any answer, even REFUSED, is no error.
func (s *bindServer) query(ctx context.Context, network, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	c := &dns.Client{Net: network, Timeout: time.Second}
	in, _, err := c.ExchangeContext(ctx, m, s.addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s %s: %w", network, name, dns.TypeToString[qtype], err)
	}
	return in, nil
}

// addZone adds the next zone, with its file, and waits until named answers
// its SOA authoritatively.
func (s *bindServer) addZone() (string, error) {
	zone := "z" + strconv.FormatInt(s.zones.Add(1), 10) + ".test."
	file := strings.TrimSuffix(zone, ".") + ".db"
	path := filepath.Join(s.dir, file)
	text := fmt.Sprintf("$TTL 60\n@ IN SOA ns.%[1]s hostmaster.%[1]s 1 3600 600 86400 60\n@ IN NS ns.%[1]s\nns IN A 127.0.0.1\n", zone)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return "", fmt.Errorf("testenv: %w", err)
	}
	if err := chownToServerUser(path); err != nil {
		return "", err
	}
	cfg := fmt.Sprintf("{ type primary; file %q; allow-update { key %q; key %q; }; };",
		file, strings.TrimSuffix(s.update.Name, "."), strings.TrimSuffix(s.sha1.Name, "."))
	if err := s.rndc("addzone", strings.TrimSuffix(zone, "."), cfg); err != nil {
		return "", namedFailure(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		in, err := s.query(ctx, "tcp", zone, dns.TypeSOA)
		if err == nil && in.Rcode == dns.RcodeSuccess && in.Authoritative && len(in.Answer) > 0 {
			return zone, nil
		}
		if err == nil {
			err = fmt.Errorf("SOA answer %s, authoritative %t", dns.RcodeToString[in.Rcode], in.Authoritative)
		}
		select {
		case <-ctx.Done():
			return "", namedFailure(fmt.Errorf("zone %s did not load: %w", zone, err))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// rndc runs one rndc command against named.
func (s *bindServer) rndc(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, s.rndcBin, append([]string{"-c", s.rndcCfg}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("rndc %s: %v: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// namedFailure adds the end of named's log to err.
func namedFailure(err error) error {
	mu.Lock()
	defer mu.Unlock()
	for _, p := range procs {
		if p.name == "named" {
			return p.failure(err)
		}
	}
	return fmt.Errorf("testenv: named: %w", err)
}

// Dig asks the server for name's records of type qtype with BIND's dig
// program (dig @127.0.0.1 -p PORT +short name qtype) and returns its answer
// lines. Without dig the test skips (fails on CI).
func (s BindServer) Dig(t testing.TB, name, qtype string) []string {
	t.Helper()
	dig, err := exec.LookPath("dig")
	if err != nil {
		unavailable(t, fmt.Errorf("testenv: dig %w: run .ci/run or apt-get install bind9-dnsutils", errNotInstalled))
		return nil
	}
	host, port, err := net.SplitHostPort(s.Addr)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, dig, "@"+host, "-p", port, "+short", "+norecurse", name, qtype).CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: dig %s %s: %v\n%s", name, qtype, err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}
