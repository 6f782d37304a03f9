package bbb

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
)

// Algorithm is a checksum hash algorithm BBB accepts.
type Algorithm string

// The checksum algorithms, named as in bbb-web's supportedChecksumAlgorithms.
const (
	SHA1   Algorithm = "sha1"
	SHA256 Algorithm = "sha256"
	SHA384 Algorithm = "sha384"
	SHA512 Algorithm = "sha512"
)

// AllAlgorithms is every algorithm BBB knows, in order of hex length.
var AllAlgorithms = []Algorithm{SHA1, SHA256, SHA384, SHA512}

// ParseAlgorithm accepts "sha1", "SHA-256", "sha384", ... and returns the Algorithm.
func ParseAlgorithm(s string) (Algorithm, error) {
	a := Algorithm(strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "-", ""))
	if a.hexLen() == 0 {
		return "", fmt.Errorf("unknown checksum algorithm %q: want one of sha1, sha256, sha384, sha512", s)
	}
	return a, nil
}

func (a Algorithm) newHash() hash.Hash {
	switch a {
	case SHA1:
		return sha1.New()
	case SHA256:
		return sha256.New()
	case SHA384:
		return sha512.New384()
	case SHA512:
		return sha512.New()
	}
	return nil
}

// hexLen is the length of the algorithm's checksum in hex digits, 0 if unknown.
func (a Algorithm) hexLen() int {
	switch a {
	case SHA1:
		return 40
	case SHA256:
		return 64
	case SHA384:
		return 96
	case SHA512:
		return 128
	}
	return 0
}

// algorithmForHexLen picks the algorithm from a checksum's length, as BBB does.
func algorithmForHexLen(n int) (Algorithm, bool) {
	for _, a := range AllAlgorithms {
		if a.hexLen() == n {
			return a, true
		}
	}
	return "", false
}

// Checksum returns hex(hash(call + query + secret)), the checksum BBB expects
// for an API call whose raw query string (without the checksum) is query.
func Checksum(alg Algorithm, call, query, secret string) string {
	h := alg.newHash()
	if h == nil {
		panic(fmt.Sprintf("bbb: unknown checksum algorithm %q", alg))
	}
	h.Write([]byte(call))
	h.Write([]byte(query))
	h.Write([]byte(secret))
	return hex.EncodeToString(h.Sum(nil))
}

// SignQuery appends the checksum parameter to an encoded query string.
func SignQuery(alg Algorithm, call, query, secret string) string {
	sum := Checksum(alg, call, query, secret)
	if query == "" {
		return "checksum=" + sum
	}
	return query + "&checksum=" + sum
}

// Errors returned by SplitChecksum and Verifier.Verify. Each maps onto the
// checksumError messageKey on the BBB API.
var (
	ErrChecksumMissing   = errors.New("checksum parameter missing")
	ErrChecksumDuplicate = errors.New("checksum parameter given more than once")
	ErrChecksumMalformed = errors.New("checksum is not a hex sha1, sha256, sha384 or sha512 digest")
	ErrChecksumAlgorithm = errors.New("checksum algorithm not allowed")
	ErrChecksumMismatch  = errors.New("checksums do not match")
)

// SplitChecksum cuts the checksum parameter out of a raw query string as text,
// exactly as bbb-web does, and returns the remaining query and the checksum.
// The remaining query is what was signed: it is not decoded or re-encoded.
func SplitChecksum(rawQuery string) (query, checksum string, err error) {
	found := false
	parts := strings.Split(rawQuery, "&")
	kept := parts[:0]
	for _, part := range parts {
		if part == "checksum" || strings.HasPrefix(part, "checksum=") {
			if found {
				return "", "", ErrChecksumDuplicate
			}
			found = true
			checksum = strings.TrimPrefix(part, "checksum")
			checksum = strings.TrimPrefix(checksum, "=")
			continue
		}
		kept = append(kept, part)
	}
	if !found || checksum == "" {
		return "", "", ErrChecksumMissing
	}
	return strings.Join(kept, "&"), checksum, nil
}

// Verifier checks request checksums against one or more secrets.
// The zero value accepts nothing; set Secrets.
type Verifier struct {
	// Secrets are the shared secrets accepted; a checksum made with any of them passes.
	Secrets []string
	// Allowed limits the algorithms accepted; empty means all four.
	Allowed []Algorithm
}

// Verify checks the checksum of an API call given its name and raw query
// string (with the checksum parameter in it, anywhere). It returns the query
// without the checksum on success. Comparison ignores case and runs in
// constant time for every secret tried.
func (v Verifier) Verify(call, rawQuery string) (string, error) {
	query, sum, err := SplitChecksum(rawQuery)
	if err != nil {
		return "", err
	}
	alg, ok := algorithmForHexLen(len(sum))
	if !ok || !isHex(sum) {
		return "", ErrChecksumMalformed
	}
	if !v.allows(alg) {
		return "", fmt.Errorf("%w: %s", ErrChecksumAlgorithm, alg)
	}
	got := []byte(strings.ToLower(sum))
	match := 0
	for _, secret := range v.Secrets {
		want := []byte(Checksum(alg, call, query, secret))
		match |= subtle.ConstantTimeCompare(got, want)
	}
	if match != 1 {
		return "", ErrChecksumMismatch
	}
	return query, nil
}

func (v Verifier) allows(alg Algorithm) bool {
	if len(v.Allowed) == 0 {
		return true
	}
	for _, a := range v.Allowed {
		if a == alg {
			return true
		}
	}
	return false
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
