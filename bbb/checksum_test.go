package bbb

import (
	"errors"
	"strings"
	"testing"
)

const docSecret = "639259d4-9dd8-4b25-bf01-95f9567eaf4b"
const docQuery = "name=Test+Meeting&meetingID=abc123&attendeePW=111222&moderatorPW=333444"

// The sha1 vector is the one in the BBB API documentation. The others were
// computed outside Go with coreutils:
//
//	printf '%s' "create${QUERY}${SECRET}" | sha256sum   (likewise sha384sum, sha512sum)
var checksumVectors = []struct {
	alg         Algorithm
	call, query string
	want        string
}{
	{SHA1, "create", docQuery, "1fcbb0c4fc1f039f73aa6d697d2db9ba7f803f17"},
	{SHA256, "create", docQuery, "da9185f7f333cfdfcd6eeac32dca3777510c4c436020d8b887ba5515bd1d189e"},
	{SHA384, "create", docQuery, "891ac633df39d0a1b4f8d597f3e190833216c4b29c4fb51ea3ca72757eeb958d6e7b49a845cf29f5c6019c7d29d029d1"},
	{SHA512, "create", docQuery, "de73ad61d11a5c801b68d4bd6ec5248546085cefb0b25c85f3c46249ea93a3a4b120f92c0a8a58d7512cb77821884951a3b01245f3435dbbef49fff3cc3988b4"},
	{SHA1, "getMeetingInfo", "meetingID=abc123", "f4a4a2107fae99c5a388a49250a191aab50f3a4a"},
	{SHA256, "getMeetingInfo", "meetingID=abc123", "039cf45b0c8a27964c5ed0923f0655147e459a5b9bfb4de181b87d313607118c"},
	{SHA384, "getMeetingInfo", "meetingID=abc123", "0cbee9efe1e503ecb98bfd1f8c6c0fec6fe27c4d33a7e19083c3514e34051608081d2ee3424a2a94f0a7c3bc35c04215"},
	{SHA512, "getMeetingInfo", "meetingID=abc123", "29b73a2a927752c164328927b8860273236cb5096dfcb64e6f5ecca9795cb4ee560bf620fa167cf87b3c4d84a678c68ed0af6e53c42b59578926b8d4b7347478"},
	{SHA256, "getMeetings", "", "a5370c5f3d97d56d53b435684cdbc429c2898a3bf9f435518b4279e1e0dbfc8c"},
}

func TestChecksumVectors(t *testing.T) {
	for _, v := range checksumVectors {
		if got := Checksum(v.alg, v.call, v.query, docSecret); got != v.want {
			t.Errorf("%s %s: got %s, want %s", v.alg, v.call, got, v.want)
		}
		raw := v.query
		if raw != "" {
			raw += "&"
		}
		raw += "checksum=" + v.want
		ver := Verifier{Secrets: []string{docSecret}}
		if q, err := ver.Verify(v.call, raw); err != nil || q != v.query {
			t.Errorf("%s %s: Verify(%q) = %q, %v", v.alg, v.call, raw, q, err)
		}
		if _, err := ver.Verify(v.call, strings.Replace(raw, v.want, strings.ToUpper(v.want), 1)); err != nil {
			t.Errorf("%s %s: upper-case checksum rejected: %v", v.alg, v.call, err)
		}
	}
}

func TestSplitChecksumPositions(t *testing.T) {
	const sum = "1fcbb0c4fc1f039f73aa6d697d2db9ba7f803f17"
	tests := []struct {
		name, raw, query string
		err              error
	}{
		{"last", "a=1&b=2&checksum=" + sum, "a=1&b=2", nil},
		{"first", "checksum=" + sum + "&a=1&b=2", "a=1&b=2", nil},
		{"middle", "a=1&checksum=" + sum + "&b=2", "a=1&b=2", nil},
		{"only", "checksum=" + sum, "", nil},
		{"missing", "a=1&b=2", "", ErrChecksumMissing},
		{"empty value", "a=1&checksum=", "", ErrChecksumMissing},
		{"bare key", "a=1&checksum", "", ErrChecksumMissing},
		{"empty query", "", "", ErrChecksumMissing},
		{"duplicate", "checksum=" + sum + "&a=1&checksum=" + sum, "", ErrChecksumDuplicate},
		{"look-alike kept", "xchecksum=1&checksum=" + sum, "xchecksum=1", nil},
		{"encoded stays encoded", "name=A%20B+C&checksum=" + sum, "name=A%20B+C", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, s, err := SplitChecksum(tt.raw)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err == nil && (q != tt.query || s != sum) {
				t.Fatalf("got %q, %q; want %q, %q", q, s, tt.query, sum)
			}
		})
	}
}

func TestVerifier(t *testing.T) {
	query := "meetingID=abc123"
	sign := func(alg Algorithm, secret string) string {
		return query + "&checksum=" + Checksum(alg, "end", query, secret)
	}
	tests := []struct {
		name string
		v    Verifier
		raw  string
		err  error
	}{
		{"second secret", Verifier{Secrets: []string{"one", "two"}}, sign(SHA256, "two"), nil},
		{"unknown secret", Verifier{Secrets: []string{"one", "two"}}, sign(SHA256, "three"), ErrChecksumMismatch},
		{"no secrets", Verifier{}, sign(SHA256, "one"), ErrChecksumMismatch},
		{"allowed", Verifier{Secrets: []string{"one"}, Allowed: []Algorithm{SHA512}}, sign(SHA512, "one"), nil},
		{"not allowed", Verifier{Secrets: []string{"one"}, Allowed: []Algorithm{SHA256, SHA512}}, sign(SHA1, "one"), ErrChecksumAlgorithm},
		{"odd length", Verifier{Secrets: []string{"one"}}, query + "&checksum=abc", ErrChecksumMalformed},
		{"not hex", Verifier{Secrets: []string{"one"}}, query + "&checksum=" + strings.Repeat("z", 40), ErrChecksumMalformed},
		{"other call", Verifier{Secrets: []string{"one"}}, query + "&checksum=" + Checksum(SHA1, "create", query, "one"), ErrChecksumMismatch},
		{"tampered query", Verifier{Secrets: []string{"one"}}, "meetingID=abc124&checksum=" + Checksum(SHA1, "end", query, "one"), ErrChecksumMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.v.Verify("end", tt.raw)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
		})
	}
}

func TestParseAlgorithm(t *testing.T) {
	for in, want := range map[string]Algorithm{"sha1": SHA1, "SHA-256": SHA256, " sha384 ": SHA384, "Sha512": SHA512} {
		if got, err := ParseAlgorithm(in); err != nil || got != want {
			t.Errorf("ParseAlgorithm(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseAlgorithm("md5"); err == nil {
		t.Error("md5 accepted")
	}
}

// FuzzVerify checks that verification never panics, that whatever is signed
// verifies with the checksum anywhere in the query, and that changing one
// character of the signed query makes it fail.
func FuzzVerify(f *testing.F) {
	f.Add("create", docQuery, docSecret, uint8(0), uint8(0))
	f.Add("join", "fullName=%C3%A9l%C3%A8ve&meetingID=a%2Cb&role=VIEWER", "s3cr3t", uint8(1), uint8(1))
	f.Add("getMeetings", "", "x", uint8(2), uint8(2))
	f.Add("end", "checksum=&&&checksum", "", uint8(3), uint8(3))
	f.Add("create", "a=1&&b=2&", "k", uint8(7), uint8(9))
	f.Fuzz(func(t *testing.T, call, query, secret string, algIdx, pos uint8) {
		v := Verifier{Secrets: []string{secret}}
		// Arbitrary input: must not panic.
		_, _ = v.Verify(call, query)
		if hasChecksumParam(query) {
			return
		}
		alg := AllAlgorithms[int(algIdx)%len(AllAlgorithms)]
		sum := Checksum(alg, call, query, secret)
		parts := []string{}
		if query != "" {
			parts = strings.Split(query, "&")
		}
		at := int(pos) % (len(parts) + 1)
		signed := append(append(append([]string{}, parts[:at]...), "checksum="+sum), parts[at:]...)
		raw := strings.Join(signed, "&")
		got, err := v.Verify(call, raw)
		if err != nil {
			t.Fatalf("Verify(%q, %q) with checksum at %d: %v", call, raw, at, err)
		}
		if got != query {
			t.Fatalf("Verify returned query %q, want %q", got, query)
		}
		if query != "" {
			tampered := []byte(query)
			tampered[int(pos)%len(tampered)] ^= 0x01
			if hasChecksumParam(string(tampered)) {
				return
			}
			if _, err := v.Verify(call, string(tampered)+"&checksum="+sum); err == nil {
				t.Fatalf("tampered query %q verified", tampered)
			}
		}
	})
}

func hasChecksumParam(q string) bool {
	for _, p := range strings.Split(q, "&") {
		if p == "checksum" || strings.HasPrefix(p, "checksum=") {
			return true
		}
	}
	return false
}
