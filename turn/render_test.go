package turn

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func goldenSets() map[string]Set {
	return map[string]Set{
		"stun_turn": {
			STUN: []string{"stun:turn1.example.com"},
			TURN: []TURNEntry{{URL: "turn:turn1.example.com:3478", Secret: "f00dcafe"}},
		},
		// Given out of order, with a duplicate and explicit and default TTLs.
		"several_turn": {
			STUN: []string{"stun:turn2.example.com:3478", "stun:turn1.example.com", "stun:turn2.example.com:3478"},
			TURN: []TURNEntry{
				{URL: "turns:turn2.example.com:443?transport=tcp", Secret: "s2", TTL: 3600 * time.Second},
				{URL: "turn:turn1.example.com:3478?transport=tcp", Secret: "s1"},
				{URL: "turns:turn1.example.com:443?transport=tcp", Secret: "s1", TTL: DefaultTTL},
				{URL: "turn:turn1.example.com:3478", Secret: "s1"},
				{URL: "turn:[2001:db8::1]:3478?transport=udp", Secret: "s1"},
				{URL: "turn:turn1.example.com:3478", Secret: "s1", TTL: DefaultTTL},
			},
		},
		"stun_only": {STUN: []string{"stun:stun.example.org:19302"}},
		// No servers is a valid file: BBB needs the stunTurnService bean and
		// its sets, empty ones included, and browsers then use host candidates.
		"empty": {},
		"escaping": {
			TURN: []TURNEntry{{URL: "turns:turn.example.com:5349", Secret: `a&b<c>"d"'e'&amp;]]>`}},
		},
	}
}

// TestGoldenRender pins the rendered XML of each set. Run with -update to
// rewrite the files after a deliberate change, and review the diff.
func TestGoldenRender(t *testing.T) {
	for name, s := range goldenSets() {
		t.Run(name, func(t *testing.T) {
			got, err := Render(s)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "golden", name+".xml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update once to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("XML differs from %s:\n got:\n%s\nwant:\n%s", path, got, want)
			}
			back, err := Parse(want)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, s.Normalize()) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", back, s.Normalize())
			}
			if !back.Equal(s) {
				t.Fatal("Equal disagrees with the round trip")
			}
		})
	}
}

func TestRenderStableOrder(t *testing.T) {
	s := goldenSets()["several_turn"]
	want, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		r := Set{STUN: slices.Clone(s.STUN), TURN: slices.Clone(s.TURN)}
		slices.Reverse(r.STUN)
		slices.Reverse(r.TURN)
		r.TURN = append(r.TURN[1:], r.TURN[0])
		got, err := Render(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("order of the input changed the output:\n%s", got)
		}
		s = r
	}
}

func TestRenderHeader(t *testing.T) {
	out, err := Render(Set{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(out, []byte(`<?xml version="1.0" encoding="UTF-8"?>`+"\n<!--")) {
		t.Fatalf("no declaration and header comment first:\n%s", out)
	}
	for _, w := range []string{"bbb-agent", "will be replaced", `id="stunTurnService"`, `<property name="remoteIceCandidates">`} {
		if !bytes.Contains(out, []byte(w)) {
			t.Errorf("output lacks %q", w)
		}
	}
}

func TestRenderRejects(t *testing.T) {
	const secret = "do-not-print-me"
	turn := func(url string) Set { return Set{TURN: []TURNEntry{{URL: url, Secret: secret}}} }
	for _, c := range []struct {
		name string
		set  Set
		want string
	}{
		{"stun scheme", Set{STUN: []string{"turn:turn.example.com"}}, "must start with stun:"},
		{"stun no scheme", Set{STUN: []string{"turn.example.com:3478"}}, "must start with stun:"},
		{"stun query", Set{STUN: []string{"stun:turn.example.com?transport=udp"}}, "takes no ?query"},
		{"stun empty", Set{STUN: []string{""}}, "must start with stun:"},
		{"stun no host", Set{STUN: []string{"stun:"}}, "no host"},
		{"stun slashes", Set{STUN: []string{"stun://turn.example.com"}}, "no // after stun:"},
		{"turn scheme", turn("https://turn.example.com"), "must start with turn: or turns:"},
		{"turn stun scheme", turn("stun:turn.example.com"), "must start with turn: or turns:"},
		{"turn upper case", turn("TURN:turn.example.com"), "must start with turn: or turns:"},
		{"turn port", turn("turn:turn.example.com:0"), `port "0"`},
		{"turn port range", turn("turn:turn.example.com:65536"), `port "65536"`},
		{"turn port text", turn("turn:turn.example.com:https"), `port "https"`},
		{"turn port empty", turn("turn:turn.example.com:"), `port ""`},
		{"turn transport", turn("turn:turn.example.com:3478?transport=sctp"), "only transport=udp or transport=tcp"},
		{"turn ipv6 bare", turn("turn:2001:db8::1:3478"), "IPv6 addresses go in brackets"},
		{"turn ipv6 bad", turn("turn:[turn.example.com]:3478"), "not an IPv6 address"},
		{"turn ipv6 open", turn("turn:[2001:db8::1:3478"), "[ without ]"},
		{"turn placeholder host", turn("turn:<turn.example.com>:3478"), "not a host name"},
		{"turn userinfo", turn("turn:user@turn.example.com"), "not a host name"},
		{"turn space", turn("turn:turn.example.com :3478"), "not a host name"},
		{"turn newline", turn("turn:turn.example.com\n"), "control character"},
		{"turn spring placeholder", turn("turn:${turnHost}:3478"), "property placeholder"},
		{"empty secret", Set{TURN: []TURNEntry{{URL: "turn:t.example.com"}}}, "empty shared secret"},
		{"secret control", Set{TURN: []TURNEntry{{URL: "turn:t.example.com", Secret: secret + "\x00"}}}, "shared secret contains a control character"},
		{"secret utf8", Set{TURN: []TURNEntry{{URL: "turn:t.example.com", Secret: secret + "\xff"}}}, "shared secret is not valid UTF-8"},
		{"secret placeholder", Set{TURN: []TURNEntry{{URL: "turn:t.example.com", Secret: "${" + secret + "}"}}}, "property placeholder"},
		{"ttl negative", Set{TURN: []TURNEntry{{URL: "turn:t.example.com", Secret: secret, TTL: -time.Second}}}, "not a positive whole number of seconds"},
		{"ttl fraction", Set{TURN: []TURNEntry{{URL: "turn:t.example.com", Secret: secret, TTL: 1500 * time.Millisecond}}}, "not a positive whole number of seconds"},
		{"ttl too long", Set{TURN: []TURNEntry{{URL: "turn:t.example.com", Secret: secret, TTL: (1 << 31) * time.Second}}}, "over BBB's limit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := Render(c.set)
			if err == nil {
				t.Fatalf("rendered:\n%s", out)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q shows the secret", err)
			}
		})
	}
}

func TestRenderAccepts(t *testing.T) {
	for _, u := range []string{
		"turn:turn1.example.com", "turn:203.0.113.7:3478", "turns:[2001:db8::1]:5349?transport=tcp",
		"turn:[2001:db8::1]", "turn:turn_1.example.com:80?transport=udp",
	} {
		if _, err := Render(Set{TURN: []TURNEntry{{URL: u, Secret: "s"}}}); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

func TestTURNEntryStringHidesSecret(t *testing.T) {
	s := Set{TURN: []TURNEntry{{URL: "turn:t.example.com", Secret: "do-not-print-me"}}}
	for _, f := range []string{"%v", "%+v", "%s"} {
		if out := fmt.Sprintf(f, s); strings.Contains(out, "do-not-print-me") {
			t.Errorf("%s shows the secret: %s", f, out)
		}
	}
}

func TestParseBBBFiles(t *testing.T) {
	for _, c := range []struct {
		file string
		want Set
	}{
		// BBB's packaged file: one STUN server, everything else commented out.
		{"bbb-packaged.xml", Set{STUN: []string{"stun:stun.freeswitch.org"}}},
		// What BBB's TURN guide has admins write, without remoteIceCandidates.
		{"bbb-docs-turn.xml", Set{
			STUN: []string{"stun:turn.example.com"},
			TURN: []TURNEntry{
				{URL: "turn:turn.example.com:443?transport=tcp", Secret: "f00dcafe", TTL: DefaultTTL},
				{URL: "turns:turn.example.com:443?transport=tcp", Secret: "f00dcafe", TTL: DefaultTTL},
			},
		}},
	} {
		t.Run(c.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// beansDoc wraps bean definitions in a beans root with the Spring namespace.
func beansDoc(body string) []byte {
	return []byte(`<?xml version="1.0" encoding="UTF-8"?>
<beans xmlns="http://www.springframework.org/schema/beans">` + body + "</beans>\n")
}

const (
	stunBean = `<bean id="s" class="org.bigbluebutton.web.services.turn.StunServer"><constructor-arg index="0" value="stun:s.example.com"/></bean>`
	turnBean = `<bean id="t" class="org.bigbluebutton.web.services.turn.TurnServer">
		<constructor-arg index="0" value="sec"/><constructor-arg index="1" value="turn:t.example.com"/><constructor-arg index="2" value="60"/></bean>`
	serviceBean = `<bean id="stunTurnService" class="org.bigbluebutton.web.services.turn.StunTurnService">
		<property name="stunServers"><set><ref bean="s"/></set></property>
		<property name="turnServers"><set><ref bean="t"/></set></property></bean>`
)

func TestParse(t *testing.T) {
	st := Set{STUN: []string{"stun:s.example.com"}, TURN: []TURNEntry{{URL: "turn:t.example.com", Secret: "sec", TTL: time.Minute}}}
	for _, c := range []struct {
		name string
		doc  []byte
		want Set
	}{
		{"refs", beansDoc(stunBean + turnBean + serviceBean), st},
		{"service first", beansDoc(serviceBean + "<!-- c -->" + turnBean + stunBean), st},
		{"other beans", beansDoc(`<bean id="x" class="com.example.Other"><property name="a" value="b"/></bean>` + stunBean + turnBean + serviceBean), st},
		{"unreferenced server ignored", beansDoc(stunBean + turnBean + serviceBean +
			`<bean id="t9" class="org.bigbluebutton.web.services.turn.TurnServer">
			<constructor-arg index="0" value="x"/><constructor-arg index="1" value="turn:unused.example.com"/><constructor-arg index="2" value="60"/></bean>`), st},
		{"no namespace", []byte(`<beans>` + stunBean + turnBean + serviceBean + `</beans>`), st},
		{"args out of order and unindexed", beansDoc(stunBean + `<bean id="t" class="org.bigbluebutton.web.services.turn.TurnServer">
			<constructor-arg index="2" value=" 60 "/><constructor-arg value="sec"/><constructor-arg><value>turn:t.example.com</value></constructor-arg></bean>` + serviceBean), st},
		{"ref local, alias, list and inline bean", beansDoc(`<bean name="a1, s" class="org.bigbluebutton.web.services.turn.StunServer"><constructor-arg value="stun:s.example.com"/></bean>
			<bean id="stunTurnService" class="org.bigbluebutton.web.services.turn.StunTurnService">
			<property name="stunServers"><list><ref local="a1"/></list></property>
			<property name="turnServers"><set>` + turnBean + `</set></property></bean>`), st},
		{"entities", beansDoc(`<bean id="t" class="org.bigbluebutton.web.services.turn.TurnServer">
			<constructor-arg index="0" value="a&amp;b&#34;&lt;"/><constructor-arg index="1" value="turn:t.example.com"/><constructor-arg index="2" value="60"/></bean>
			<bean class="org.bigbluebutton.web.services.turn.StunTurnService"><property name="turnServers"><set><ref bean="t"/></set></property></bean>`),
			Set{TURN: []TURNEntry{{URL: "turn:t.example.com", Secret: `a&b"<`, TTL: time.Minute}}}},
		{"empty sets", beansDoc(`<bean id="stunTurnService" class="org.bigbluebutton.web.services.turn.StunTurnService">
			<property name="stunServers"><set/></property><property name="turnServers"><set></set></property></bean>`), Set{}},
		{"trailing comment", append(beansDoc(stunBean+turnBean+serviceBean), "<!-- end -->\n"...), st},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse(c.doc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	turnArgs := func(args string) []byte {
		return beansDoc(`<bean id="t" class="org.bigbluebutton.web.services.turn.TurnServer">` + args + `</bean>
			<bean class="org.bigbluebutton.web.services.turn.StunTurnService"><property name="turnServers"><set><ref bean="t"/></set></property></bean>`)
	}
	for _, c := range []struct {
		name string
		doc  []byte
		want string
	}{
		{"empty", nil, "no XML element"},
		{"not xml", []byte("stun:stun.example.com\n"), "no XML element"},
		{"unclosed", beansDoc(stunBean + turnBean + serviceBean)[:200], "malformed XML: XML syntax error on line 2: unexpected EOF"},
		{"mismatched tag", beansDoc(`<bean id="s"></beans>`), "element <bean> closed by </beans>"},
		{"element after root", append(beansDoc(stunBean+turnBean+serviceBean), "<beans/>"...), "after the root element"},
		{"text after root", append(beansDoc(stunBean+turnBean+serviceBean), "junk"...), "text after the root element"},
		{"other root", []byte(`<config><bean/></config>`), "root element is <config>"},
		{"no serviceBean", beansDoc(stunBean + turnBean), "no StunTurnService bean"},
		{"two services", beansDoc(stunBean + turnBean + serviceBean + serviceBean), "more than one StunTurnService bean"},
		{"missing ref", beansDoc(turnBean + serviceBean), `refers to bean "s", which is not defined`},
		{"wrong class", beansDoc(`<bean id="s" class="org.bigbluebutton.web.services.turn.TurnServer"/>` + turnBean + serviceBean), "does not belong in stunServers"},
		{"too few args", turnArgs(`<constructor-arg index="0" value="sec"/><constructor-arg index="1" value="turn:t.example.com"/>`), "2 constructor arguments, want 3"},
		{"repeated index", turnArgs(`<constructor-arg index="0" value="a"/><constructor-arg index="0" value="b"/><constructor-arg index="2" value="1"/>`), `index "0"`},
		{"index out of range", turnArgs(`<constructor-arg index="3" value="a"/><constructor-arg index="0" value="b"/><constructor-arg index="2" value="1"/>`), `index "3"`},
		{"no value", turnArgs(`<constructor-arg index="0"/><constructor-arg index="1" value="b"/><constructor-arg index="2" value="1"/>`), "without a value"},
		{"ttl text", turnArgs(`<constructor-arg index="0" value="a"/><constructor-arg index="1" value="turn:t.example.com"/><constructor-arg index="2" value="${ttl}"/>`), `ttl "${ttl}"`},
		{"ttl zero", turnArgs(`<constructor-arg index="0" value="a"/><constructor-arg index="1" value="turn:t.example.com"/><constructor-arg index="2" value="0"/>`), `ttl "0"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse(c.doc)
			if err == nil {
				t.Fatalf("parsed: %+v", got)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
		})
	}
}

// FuzzParse checks that Parse never panics, and that whatever it reads and
// Render accepts reads back the same.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata", filepath.Join("testdata", "golden")} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.xml"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add(beansDoc(stunBean + turnBean + serviceBean))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			return
		}
		out, err := Render(s)
		if err != nil {
			return
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Render(%+v)): %v", s, err)
		}
		if !reflect.DeepEqual(back, s) {
			t.Fatalf("round trip: got %+v, want %+v", back, s)
		}
	})
}
