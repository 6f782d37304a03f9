package dnsupdate

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/bbb-agent/bbb-agent/internal/testenv"
)

// TestRFC2136Check: Check passes with the zone's key and fails, naming what
// to fix, for each way Apply would fail, without changing the zone.
func TestRFC2136Check(t *testing.T) {
	s := testenv.Bind(t)
	ctx := t.Context()
	dead := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	tests := []struct {
		name string
		edit func(*RFC2136Config)
		is   error
		want []string // in the message; none: Check passes
	}{
		{"the zone's key", nil, nil, nil},
		{"hmac-sha1 key", func(c *RFC2136Config) {
			c.TSIGKeyName, c.TSIGSecret, c.TSIGAlgorithm = s.SHA1.Name, s.SHA1.Secret, "hmac-sha1"
		}, nil, nil},
		{"a dead server first", func(c *RFC2136Config) { c.Servers = []string{dead, s.Addr} }, nil, nil},
		{"unknown key name", func(c *RFC2136Config) { c.TSIGKeyName = "nobody-knows." },
			ErrTSIGRejected, []string{"nobody-knows", "BADKEY", "--dns-tsig-key-name"}},
		{"wrong secret", func(c *RFC2136Config) { c.TSIGSecret = s.Other.Secret },
			ErrTSIGRejected, []string{"BADSIG", "--dns-tsig-secret"}},
		{"key not allowed to update the zone", func(c *RFC2136Config) {
			c.TSIGKeyName, c.TSIGSecret = s.Other.Name, s.Other.Secret
		}, ErrTSIGRejected, []string{"REFUSED", "may not update zone " + s.Zone}},
		{"unsigned", func(c *RFC2136Config) { c.TSIGKeyName, c.TSIGSecret = "", "" },
			nil, []string{"unsigned update", "--dns-tsig-key-name"}},
		{"zone not served", func(c *RFC2136Config) { c.Zone = "not-served.test." },
			ErrNotAuthoritative, []string{"not authoritative for zone not-served.test."}},
		{"no server reachable", func(c *RFC2136Config) { c.Servers = []string{dead} },
			nil, []string{"could be reached", dead}},
	}
	serial := func() string {
		t.Helper()
		soa := s.Dig(t, s.Zone, "SOA")
		if len(soa) != 1 {
			t.Fatalf("SOA of %s: %v", s.Zone, soa)
		}
		return soa[0]
	}
	before := serial()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := bindProvider(t, s, tt.edit).Check(ctx)
			t.Log(err)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want %v", err, tt.is)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), s.KeySecret) || strings.Contains(err.Error(), s.Other.Secret) {
				t.Errorf("error %q shows a secret", err)
			}
		})
	}
	if after := serial(); after != before {
		t.Errorf("Check changed the zone: SOA %q, then %q", before, after)
	}
}
