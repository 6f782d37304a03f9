package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCoturn(t *testing.T) {
	t.Parallel()
	s1, s2 := Coturn(t, "secret-one"), Coturn(t, "secret-two")
	if s1.Addr == s2.Addr || s1.TLSAddr == s2.TLSAddr || s1.Addr == s1.TLSAddr {
		t.Fatalf("addresses not apart: %s %s, %s %s", s1.Addr, s1.TLSAddr, s2.Addr, s2.TLSAddr)
	}
	if s1.Secret != "secret-one" || s1.Realm == "" || s1.RootCAs == nil {
		t.Errorf("server: %+v", s1)
	}

	binding := func(s CoturnServer, network string) error {
		addr := s.Addr
		if network == "tls" {
			addr = s.TLSAddr
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return stunBinding(ctx, network, addr, s.RootCAs)
	}

	t.Run("answers STUN over UDP, TCP and TLS", func(t *testing.T) {
		for _, s := range []CoturnServer{s1, s2} {
			for _, network := range []string{"udp", "tcp", "tls"} {
				if err := binding(s, network); err != nil {
					t.Error(err)
				}
			}
		}
	})

	t.Run("listens on 127.0.0.1 only", func(t *testing.T) {
		for _, addr := range []string{s1.Addr, s1.TLSAddr} {
			host, port, err := net.SplitHostPort(addr)
			if err != nil || host != "127.0.0.1" {
				t.Fatalf("address %q: want 127.0.0.1:PORT", addr)
			}
			p, _ := strconv.Atoi(port)
			got := sockets(t, "tcp", p)
			if addr == s1.Addr {
				got = append(got, sockets(t, "udp", p)...)
			}
			if len(got) == 0 {
				t.Errorf("no socket on port %d", p)
			}
			for _, s := range got {
				if !strings.HasSuffix(s, fmt.Sprintf(" 0100007F:%04X", p)) {
					t.Errorf("socket %s, want 127.0.0.1:%d", s, p)
				}
			}
		}
	})

	t.Run("keeps the secret off the command line", func(t *testing.T) {
		procs := running(t)
		if len(procs) == 0 {
			t.Fatal("no coturn among the running servers")
		}
		for _, p := range procs {
			cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.cmd.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(cmdline), "secret-") {
				t.Errorf("%s command line shows the secret: %q", p.name, cmdline)
			}
		}
	})

	t.Run("Stop stops one server only", func(t *testing.T) {
		before := len(running(t))
		s2.Stop()
		s2.Stop()
		if n := len(running(t)); n != before-1 {
			t.Errorf("%d coturn servers run after Stop, want %d", n, before-1)
		}
		for _, network := range []string{"udp", "tcp", "tls"} {
			if err := binding(s2, network); err == nil {
				t.Errorf("%s: still answers over %s after Stop", s2.Addr, network)
			}
		}
		if err := binding(s1, "udp"); err != nil {
			t.Errorf("the other server: %v", err)
		}
	})
}

// running lists the coturn servers that run.
func running(t *testing.T) []*process {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	var ps []*process
	for _, p := range procs {
		if strings.HasPrefix(p.name, "coturn-") {
			ps = append(ps, p)
		}
	}
	return ps
}
