package fleet

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bbb-agent/bbb-agent/bbb"
)

// TestBBBReason calls real (loopback) servers that fail as BBB servers do
// and checks the words and class of each failure.
func TestBBBReason(t *testing.T) {
	xml := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) }
	}
	checksum := xml(`<response><returncode>FAILED</returncode><messageKey>checksumError</messageKey><message>Checksums do not match</message></response>`)
	ok := xml(`<response><returncode>SUCCESS</returncode><meetings/></response>`)
	// A closed port: listen, note the address, close.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	// A listener that accepts and never answers.
	hang, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hang.Close()
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := hang.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	plain := httptest.NewServer(ok)
	defer plain.Close()

	for _, tc := range []struct {
		name  string
		url   func() string
		class HealthClass
		want  string
	}{
		{"healthy", func() string { return plain.URL }, "", ""},
		{"wrong secret", server(t, checksum, false), ChecksumError, ReasonChecksum},
		{"closed port", func() string { return closed }, NotAnswering, "BBB not answering: dial tcp " + strings.TrimPrefix(closed, "http://") + ": connect: connection refused"},
		{"hanging", func() string { return "http://" + hang.Addr().String() }, Hanging, "BBB hanging: no answer in 300ms"},
		{"untrusted certificate", server(t, ok, true), TLSError, "TLS: x509: certificate signed by unknown authority"},
		{"https to a plain server", func() string { return strings.Replace(plain.URL, "http:", "https:", 1) }, TLSError, "TLS: the server does not speak TLS"},
		{"HTTP error", server(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusBadGateway) }, false), HTTPError, "HTTP error: 502 Bad Gateway"},
		{"not BBB", server(t, xml("<html><body>It works!</body></html>"), false), BadAnswer, "not a BBB answer: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := bbb.NewClient(tc.url(), "the-secret-0123456789")
			if err != nil {
				t.Fatal(err)
			}
			// Only the hanging server waits out the timeout; the others
			// answer or fail at once, given time (a TLS handshake on a
			// loaded machine, or under -race, can take over 300 ms).
			timeout := 10 * time.Second
			if tc.class == Hanging {
				timeout = 300 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			_, err = c.GetMeetings(ctx)
			got := BBBReason(err, timeout)
			if !strings.HasPrefix(got, tc.want) || (tc.want == "") != (got == "") {
				t.Errorf("reason %q (error %v), want %q", got, err, tc.want)
			}
			if c := ReasonClass(got); c != tc.class {
				t.Errorf("class of %q: %q, want %q", got, c, tc.class)
			}
			if strings.Contains(got, "checksum=") || strings.Contains(got, "the-secret") {
				t.Errorf("the reason carries a secret or checksum: %q", got)
			}
		})
	}
}

// server starts an httptest server (TLS with its own, untrusted,
// certificate when tls is set) and returns its URL.
func server(t *testing.T, h http.HandlerFunc, tls bool) func() string {
	s := httptest.NewUnstartedServer(h)
	if tls {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(s.Close)
	return func() string { return s.URL }
}

func TestReasonClass(t *testing.T) {
	for reason, want := range map[string]HealthClass{
		"":                                 "",
		"BBB not answering: dial tcp x":    NotAnswering,
		"TLS: x509: expired":               TLSError,
		"TLSx":                             OtherError,
		"offline: never reported":          OfflineClass,
		"checksumError: wrong secret":      ChecksumError,
		"version: BBB 2.3.1 takes only":    VersionTooOld,
		"something a newer agent invented": OtherError,
	} {
		if got := ReasonClass(reason); got != want {
			t.Errorf("ReasonClass(%q) = %q, want %q", reason, got, want)
		}
	}
	// HealthClasses lists every class a reason maps to: /metrics counts on
	// it (balancer's metricsNode keeps a class as its index there).
	for _, p := range reasonPrefixes {
		if !slices.Contains(HealthClasses, p.class) {
			t.Errorf("HealthClasses lacks %q (of prefix %q)", p.class, p.prefix)
		}
	}
	if !slices.Contains(HealthClasses, OtherError) || slices.Contains(HealthClasses, "") {
		t.Errorf("HealthClasses %q: want OtherError in it, and not \"\"", HealthClasses)
	}
}

func TestCleanReason(t *testing.T) {
	got := CleanReason("BBB error: GET /api/getMeetings?checksum=0123abcdef failed\n" + strings.Repeat("é", 200))
	if strings.Contains(got, "0123abcdef") || strings.Contains(got, "\n") || len(got) > MaxReasonLen+len("…") {
		t.Errorf("CleanReason: %q (%d bytes)", got, len(got))
	}
	if !strings.HasSuffix(got, "…") || !strings.HasPrefix(got, "BBB error: GET /api/getMeetings?checksum=… failed é") {
		t.Errorf("CleanReason: %q", got)
	}
}
