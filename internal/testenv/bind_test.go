package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestBind(t *testing.T) {
	s1, s2 := Bind(t), Bind(t)
	if s1.Zone == s2.Zone {
		t.Fatalf("two calls returned the same zone %s", s1.Zone)
	}
	if s1.Addr != s2.Addr {
		t.Errorf("two calls started two servers: %s and %s", s1.Addr, s2.Addr)
	}
	host, port, err := net.SplitHostPort(s1.Addr)
	if err != nil || host != "127.0.0.1" {
		t.Fatalf("Addr %q: want 127.0.0.1:PORT", s1.Addr)
	}
	if s1.Algorithm != "hmac-sha256" || s1.SHA1.Algorithm != "hmac-sha1" || s1.KeyName == s1.Other.Name {
		t.Errorf("keys: %s %s, sha1 %+v, other %+v", s1.KeyName, s1.Algorithm, s1.SHA1.Name, s1.Other.Name)
	}

	t.Run("answers the zone's SOA over UDP and TCP", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			in := exchange(t, network, s1.Addr, query(s1.Zone, dns.TypeSOA), nil)
			if in.Rcode != dns.RcodeSuccess || !in.Authoritative || len(in.Answer) != 1 {
				t.Errorf("%s: SOA %s: %v", network, s1.Zone, in)
			}
		}
	})

	t.Run("listens on 127.0.0.1 only", func(t *testing.T) {
		p, _ := strconv.Atoi(port)
		// named opens a socket per worker thread. 0100007F is 127.0.0.1
		// as the kernel prints it.
		local := fmt.Sprintf("0100007F:%04X", p)
		for _, proto := range []string{"tcp", "udp"} {
			got := sockets(t, proto, p)
			if len(got) == 0 {
				t.Errorf("no %s socket on port %d", proto, p)
			}
			for _, s := range got {
				if s != proto+" "+local {
					t.Errorf("%s socket %s, want %s", proto, s, local)
				}
			}
		}
	})

	name := "host." + s1.Zone
	a := &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}
	update := func(t *testing.T, zone string, key BindKey) *dns.Msg {
		m := new(dns.Msg)
		m.SetUpdate(zone)
		m.Insert([]dns.RR{dns.Copy(a)})
		return exchange(t, "tcp", s1.Addr, m, &key)
	}

	t.Run("updates signed with the keys", func(t *testing.T) {
		for _, key := range []BindKey{s1.Key(), s1.SHA1} {
			if in := update(t, s1.Zone, key); in.Rcode != dns.RcodeSuccess {
				t.Errorf("update signed with %s (%s): %s", key.Name, key.Algorithm, dns.RcodeToString[in.Rcode])
			}
		}
		in := exchange(t, "udp", s1.Addr, query(name, dns.TypeA), nil)
		if len(in.Answer) != 1 || in.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
			t.Errorf("after the update, %s A: %v", name, in.Answer)
		}
	})

	t.Run("refuses the other key and unsigned updates", func(t *testing.T) {
		if in := update(t, s1.Zone, s1.Other); in.Rcode != dns.RcodeRefused {
			t.Errorf("update signed with %s: %s, want REFUSED", s1.Other.Name, dns.RcodeToString[in.Rcode])
		}
		m := new(dns.Msg)
		m.SetUpdate(s1.Zone)
		m.Insert([]dns.RR{dns.Copy(a)})
		if in := exchange(t, "tcp", s1.Addr, m, nil); in.Rcode != dns.RcodeRefused {
			t.Errorf("unsigned update: %s, want REFUSED", dns.RcodeToString[in.Rcode])
		}
	})

	t.Run("zones are apart", func(t *testing.T) {
		in := exchange(t, "tcp", s2.Addr, query("host."+s2.Zone, dns.TypeA), nil)
		if in.Rcode != dns.RcodeNameError {
			t.Errorf("host.%s: %s, want NXDOMAIN", s2.Zone, dns.RcodeToString[in.Rcode])
		}
	})

	t.Run("dig reads it", func(t *testing.T) {
		if got := s1.Dig(t, name, "A"); len(got) != 1 || got[0] != "192.0.2.1" {
			t.Errorf("dig %s A: %q", name, got)
		}
		if got := s1.Dig(t, "nothing."+s1.Zone, "A"); len(got) != 0 {
			t.Errorf("dig nothing.%s A: %q", s1.Zone, got)
		}
	})

	var gone BindServer
	t.Run("zone deleted after the test", func(t *testing.T) {
		gone = Bind(t)
	})
	n, err := named()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(n.dir, strings.TrimSuffix(gone.Zone, ".")+".db")
	deadline := time.Now().Add(5 * time.Second)
	for {
		in := exchange(t, "tcp", gone.Addr, query(gone.Zone, dns.TypeSOA), nil)
		_, err := os.Stat(file)
		if in.Rcode == dns.RcodeRefused && os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after its test ended, %s still answers %s; its file: %v", gone.Zone, dns.RcodeToString[in.Rcode], err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	return m
}

// exchange sends m, signed with key unless nil.
func exchange(t *testing.T, network, addr string, m *dns.Msg, key *BindKey) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	if key != nil {
		alg := dns.HmacSHA256
		if key.Algorithm == "hmac-sha1" {
			alg = dns.HmacSHA1
		}
		c.TsigSecret = map[string]string{key.Name: key.Secret}
		m.SetTsig(key.Name, alg, 300, time.Now().Unix())
	}
	in, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", network, addr, err)
	}
	return in
}

// sockets lists the listening TCP, or the bound UDP, sockets on port, IPv4
// and IPv6, as "proto local-address" from /proc/net.
func sockets(t *testing.T, proto string, port int) []string {
	t.Helper()
	var got []string
	for _, p := range []string{proto, proto + "6"} {
		b, err := os.ReadFile("/proc/net/" + p)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// TCP_LISTEN is 0A; an unconnected UDP socket is 07 (TCP_CLOSE).
			if len(f) > 3 && (f[3] == "0A" || proto == "udp" && f[3] == "07") && strings.HasSuffix(f[1], fmt.Sprintf(":%04X", port)) {
				got = append(got, p+" "+f[1])
			}
		}
	}
	return got
}
