package placement

import (
	"reflect"
	"testing"

	"github.com/bbb-agent/bbb-agent/fleet"
)

func TestParseServerTag(t *testing.T) {
	tests := []struct {
		in   string
		want TagRequest
	}{
		{"", TagRequest{}},
		{"!", TagRequest{}},
		{"  !  ", TagRequest{}},
		{";", TagRequest{}},
		{" ; ;!", TagRequest{}},
		{"test", TagRequest{Tags: []string{"test"}}},
		{"test!", TagRequest{Tags: []string{"test"}, Required: true}},
		{" test ! ", TagRequest{Tags: []string{"test"}, Required: true}},
		{"a;b", TagRequest{Tags: []string{"a", "b"}}},
		{" a ; b ;; !", TagRequest{Tags: []string{"a", "b"}, Required: true}},
		{"none", TagRequest{Tags: []string{"none"}}},
		{"none;gpu!", TagRequest{Tags: []string{"none", "gpu"}, Required: true}},
		{"Test", TagRequest{Tags: []string{"Test"}}},
		{"a!b", TagRequest{Tags: []string{"a!b"}}},
		{"a!;b!", TagRequest{Tags: []string{"a!", "b"}, Required: true}},
		{"a!!", TagRequest{Tags: []string{"a!"}, Required: true}},
		{"a,b", TagRequest{Tags: []string{"a,b"}}},
		{"big room", TagRequest{Tags: []string{"big room"}}},
	}
	for _, tt := range tests {
		if got := ParseServerTag(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseServerTag(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

// tagFleet follows the example of Scalelite's tag documentation, plus nodes
// with several tags and a capitalised tag.
func tagFleet() []Candidate {
	return []Candidate{
		mk("bbb-1", 3, tags("test")),
		mk("bbb-2", 2),
		mk("bbb-3", 0),
		mk("bbb-4", 2, tags("test2")),
		mk("bbb-5", 1, tags("gpu", "test2")),
		mk("bbb-6", 0, tags("Test")),
		mk("bbb-7", 0, tags("test"), state(fleet.Cordoned)),
	}
}

func TestPickTags(t *testing.T) {
	fl := tagFleet()
	tests := []pickCase{
		{name: "absent", cands: fl, req: ParseServerTag(""), want: "bbb-3"},
		{name: "bang alone", cands: fl, req: ParseServerTag("!"), want: "bbb-3"},
		{name: "required flag without tags", cands: fl, req: TagRequest{Required: true}, want: "bbb-3"},
		{name: "optional match", cands: fl, req: ParseServerTag("test"), want: "bbb-1"},
		{name: "required match", cands: fl, req: ParseServerTag("test!"), want: "bbb-1"},
		{name: "list: least loaded match", cands: fl, req: ParseServerTag("test;test2"), want: "bbb-5"},
		{name: "list required", cands: fl, req: ParseServerTag("test;test2!"), want: "bbb-5"},
		{name: "any of a node's tags", cands: fl, req: ParseServerTag("gpu!"), want: "bbb-5"},
		{name: "none", cands: fl, req: ParseServerTag("none"), want: "bbb-3"},
		{name: "none required", cands: fl, req: ParseServerTag("none!"), want: "bbb-3"},
		{name: "none in a list", cands: fl, req: ParseServerTag("test;none"), want: "bbb-3"},
		{name: "none in a list, tagged less loaded", cands: fl, req: ParseServerTag("none;gpu!"), want: "bbb-3"},
		{name: "optional no match: untagged fallback", cands: fl, req: ParseServerTag("test3"), want: "bbb-3", fall: true},
		{name: "required no match", cands: fl, req: ParseServerTag("test3!"), err: ErrTagUnavailable},
		{name: "case-sensitive: no match", cands: fl, req: ParseServerTag("TEST"), want: "bbb-3", fall: true},
		{name: "case-sensitive: match", cands: fl, req: ParseServerTag("Test!"), want: "bbb-6"},
		{name: "whitespace around entries", cands: fl, req: ParseServerTag("  test ;  ; "), want: "bbb-1"},
		{name: "ineligible match does not count", cands: fl[6:], req: ParseServerTag("test!"), err: ErrTagUnavailable},
		{name: "ineligible match: fallback",
			cands: []Candidate{mk("t", 0, tags("test"), offline), mk("u", 90)}, req: ParseServerTag("test"), want: "u", fall: true},
		{name: "untagged only, none there",
			cands: []Candidate{mk("t", 0, tags("test"))}, req: ParseServerTag(""), err: ErrNoNode},
		{name: "optional, no match and no untagged",
			cands: []Candidate{mk("t", 0, tags("test"))}, req: ParseServerTag("gpu"), err: ErrNoNode},
		{name: "required, no candidates", req: ParseServerTag("gpu!"), err: ErrTagUnavailable},
		{name: "empty node tag is untagged",
			cands: []Candidate{mk("e", 5, tags("")), mk("u", 9)}, req: ParseServerTag(""), want: "e"},
		{name: "node tagged none matches none",
			cands: []Candidate{mk("n", 5, tags("none")), mk("t", 0, tags("x"))}, req: ParseServerTag("none!"), want: "n"},
		{name: "match beats a less loaded untagged node",
			cands: []Candidate{mk("t", 100, tags("test")), mk("u", 0)}, req: ParseServerTag("test"), want: "t"},

		{name: "optional: match over ceiling, untagged under",
			cands: []Candidate{mk("t", 0, tags("test"), cpu(90)), mk("u", 200, cpu(20))},
			req:   ParseServerTag("test"), want: "u", fall: true},
		{name: "optional: match unhealthy, untagged healthy",
			cands: []Candidate{mk("t", 0, tags("test"), unhealthy), mk("u", 200)},
			req:   ParseServerTag("test"), want: "u", fall: true},
		{name: "optional: both over ceiling, match kept",
			cands: []Candidate{mk("t", 50, tags("test"), cpu(90)), mk("u", 0, cpu(90))},
			req:   ParseServerTag("test"), want: "t", over: true},
		{name: "required: match over ceiling, untagged under",
			cands: []Candidate{mk("t", 0, tags("test"), cpu(90)), mk("u", 0, cpu(20))},
			req:   ParseServerTag("test!"), want: "t", over: true},
		{name: "required: match unhealthy",
			cands: []Candidate{mk("t", 0, tags("test"), unhealthy), mk("u", 0)},
			req:   ParseServerTag("test!"), want: "t", sick: true},
		{name: "untagged request ignores a healthier tagged node",
			cands: []Candidate{mk("t", 0, tags("test")), mk("u", 0, unhealthy, cpu(95))},
			req:   ParseServerTag(""), want: "u", over: true, sick: true},
	}
	runPick(t, tests)
}
