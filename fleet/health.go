package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/bbb-agent/bbb-agent/bbb"
)

// HealthClass is the kind of a node's health problem, in one short word:
// the reason label of metrics (a bounded set), while the reason text, which
// names addresses and errors, goes to status and logs only.
type HealthClass string

// The health classes. A healthy node has none ("").
const (
	NotAnswering  HealthClass = "not_answering"  // connection refused, reset or closed; no route; name unknown
	Hanging       HealthClass = "hanging"        // connected, but no answer in time
	TLSError      HealthClass = "tls_error"      // certificate not trusted, expired, for another name; no TLS
	ChecksumError HealthClass = "checksum_error" // BBB refuses the checksum: the secret is wrong
	HTTPError     HealthClass = "http_error"     // an HTTP status other than 200 (a proxy's 502, a 404)
	BadAnswer     HealthClass = "bad_answer"     // 200, but not a BBB API answer
	VersionTooOld HealthClass = "version"        // BBB too old for what is asked of it
	OfflineClass  HealthClass = "offline"        // no report (or poll answer) for too long
	TURNError     HealthClass = "turn_error"     // a TURN node fails its own STUN/TURN probe
	OtherError    HealthClass = "error"          // anything else, and reasons this version does not know
)

// HealthClasses are the classes ReasonClass returns, but "".
var HealthClasses = []HealthClass{NotAnswering, Hanging, TLSError, ChecksumError, HTTPError, BadAnswer, VersionTooOld,
	OfflineClass, TURNError, OtherError}

// The reason texts start with these prefixes; ReasonClass maps them back, so
// a reason travels (an agent's report, the store) as one string.
var reasonPrefixes = []struct {
	prefix string
	class  HealthClass
}{
	{"BBB not answering", NotAnswering},
	{"BBB hanging", Hanging},
	{"TLS", TLSError},
	{"checksumError", ChecksumError},
	{"HTTP error", HTTPError},
	{"not a BBB answer", BadAnswer},
	{"version", VersionTooOld},
	{"offline", OfflineClass},
	{"TURN", TURNError},
}

// ReasonChecksum is the reason of a node whose BBB refuses checksums signed
// with the secret it was given.
const ReasonChecksum = "checksumError: wrong secret"

// MaxReasonLen bounds a reason text, in bytes.
const MaxReasonLen = 200

// ReasonClass is the class of a reason text; "" for "" (healthy) and
// OtherError for a text of no known class.
func ReasonClass(reason string) HealthClass {
	if reason == "" {
		return ""
	}
	for _, p := range reasonPrefixes {
		if rest, ok := strings.CutPrefix(reason, p.prefix); ok && (rest == "" || rest[0] == ':') {
			return p.class
		}
	}
	return OtherError
}

// checksumParam finds a checksum in a text, should an error carry a signed URL.
var checksumParam = regexp.MustCompile(`(?i)checksum=[0-9a-f]+`)

// CleanReason bounds a reason text from elsewhere (an agent's report) to
// MaxReasonLen bytes of one line, without checksums.
func CleanReason(s string) string {
	s = checksumParam.ReplaceAllString(s, "checksum=…")
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > MaxReasonLen {
		cut := MaxReasonLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// BBBReason says in a few words, for an operator, why a call to a BBB API
// failed; timeout is the call's time limit (for "no answer in 5s"). The text
// starts with its class's prefix (ReasonClass), holds no secret and no
// checksum, and is "" for a nil error.
func BBBReason(err error, timeout time.Duration) string {
	if err == nil {
		return ""
	}
	return CleanReason(bbbReason(err, timeout))
}

func bbbReason(err error, timeout time.Duration) string {
	if errors.Is(err, bbb.ErrChecksum) {
		return ReasonChecksum
	}
	if msg, ok := tlsProblem(err); ok {
		return "TLS: " + msg
	}
	var status *bbb.StatusError
	if errors.As(err, &status) {
		return "HTTP error: " + status.Status
	}
	var op *net.OpError
	isOp := errors.As(err, &op)
	var dns *net.DNSError
	switch {
	case errors.As(err, &dns):
		return "BBB not answering: " + dns.Error()
	case isOp && op.Op == "dial":
		return "BBB not answering: " + op.Error()
	case isTimeout(err):
		if timeout > 0 {
			return fmt.Sprintf("BBB hanging: no answer in %s", timeout)
		}
		return "BBB hanging: no answer in time"
	case isOp:
		return "BBB not answering: " + op.Error()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "BBB not answering: the connection was closed without an answer"
	case strings.Contains(err.Error(), "not a BBB API response"):
		return "not a BBB answer: the URL answers, but not with the BBB API (check the URL's path, /bigbluebutton/api/)"
	}
	return "BBB error: " + err.Error()
}

// tlsProblem finds a TLS failure in err and words it.
func tlsProblem(err error) (string, bool) {
	var verify *tls.CertificateVerificationError
	if errors.As(err, &verify) {
		return verify.Err.Error(), true
	}
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	if errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid) {
		// The innermost x509 text ("x509: certificate signed by unknown authority").
		msg := err.Error()
		if i := strings.Index(msg, "x509: "); i >= 0 {
			msg = msg[i:]
		}
		return msg, true
	}
	var record tls.RecordHeaderError
	if errors.As(err, &record) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return "the server does not speak TLS (an https:// URL for an http:// server?)", true
	}
	var alert tls.AlertError
	if errors.As(err, &alert) {
		return "the server refused the TLS handshake: " + alert.Error(), true
	}
	return "", false
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
