package turn

import (
	"bytes"
	"cmp"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The classes bbb-web's turn-stun-servers.xml is made of
// (org.bigbluebutton.web.services.turn in bbb-common-web).
const (
	classStunServer       = "org.bigbluebutton.web.services.turn.StunServer"
	classTurnServer       = "org.bigbluebutton.web.services.turn.TurnServer"
	classStunTurnService  = "org.bigbluebutton.web.services.turn.StunTurnService"
	stunTurnServiceBeanID = "stunTurnService"
)

// DefaultTTL is how long the credentials BBB hands out for a TURN server stay
// valid when a TURNEntry does not say: BBB's own default, one day.
const DefaultTTL = 86400 * time.Second

// maxTTL is the largest TTL BBB can hold: TurnServer keeps it in a Java int.
const maxTTL = math.MaxInt32 * time.Second

// Set is what a BBB node's turn-stun-servers.xml tells browsers: the STUN
// servers to ask and the TURN servers to relay through. The zero Set is valid
// and renders a file with no servers, which leaves browsers with their host
// candidates only.
type Set struct {
	// STUN holds URLs of the form stun:host[:port].
	STUN []string
	TURN []TURNEntry
}

// TURNEntry is one TURN URL with the shared secret (coturn's
// static-auth-secret) that BBB signs short-lived credentials with.
type TURNEntry struct {
	// URL is turn:host[:port] or turns:host[:port], optionally with
	// ?transport=udp or ?transport=tcp, e.g. turn:turn1.example.com:3478 or
	// turns:turn1.example.com:443?transport=tcp.
	URL    string
	Secret string
	// TTL is how long the handed-out credentials stay valid, in whole
	// seconds; zero means DefaultTTL.
	TTL time.Duration
}

// String describes the entry without its secret, so a Set can be logged.
func (e TURNEntry) String() string {
	return fmt.Sprintf("%s (ttl %s)", e.URL, e.ttl())
}

func (e TURNEntry) ttl() time.Duration {
	if e.TTL == 0 {
		return DefaultTTL
	}
	return e.TTL
}

// Normalize returns the set in the order Render writes it and Parse returns
// it: STUN URLs sorted, TURN entries sorted by URL, secret and TTL, TTL zero
// replaced by DefaultTTL, exact duplicates dropped, and empty lists nil.
func (s Set) Normalize() Set {
	var n Set
	if len(s.STUN) > 0 {
		n.STUN = slices.Compact(slices.Sorted(slices.Values(s.STUN)))
	}
	if len(s.TURN) > 0 {
		n.TURN = make([]TURNEntry, len(s.TURN))
		for i, e := range s.TURN {
			e.TTL = e.ttl()
			n.TURN[i] = e
		}
		slices.SortFunc(n.TURN, func(a, b TURNEntry) int {
			return cmp.Or(strings.Compare(a.URL, b.URL), strings.Compare(a.Secret, b.Secret), cmp.Compare(a.TTL, b.TTL))
		})
		n.TURN = slices.Compact(n.TURN)
	}
	return n
}

// Equal reports whether both sets hand browsers the same servers, whatever
// their order.
func (s Set) Equal(o Set) bool {
	a, b := s.Normalize(), o.Normalize()
	return slices.Equal(a.STUN, b.STUN) && slices.Equal(a.TURN, b.TURN)
}

// Validate reports the first entry Render would refuse.
func (s Set) Validate() error {
	for _, u := range s.STUN {
		if err := checkURL(u, "stun:"); err != nil {
			return fmt.Errorf("STUN server %q: %w", u, err)
		}
	}
	for _, e := range s.TURN {
		if err := checkURL(e.URL, "turn:", "turns:"); err != nil {
			return fmt.Errorf("TURN server %q: %w", e.URL, err)
		}
		// The secret never goes into an error message.
		if e.Secret == "" {
			return fmt.Errorf("TURN server %q: empty shared secret", e.URL)
		}
		if err := checkValue(e.Secret); err != nil {
			return fmt.Errorf("TURN server %q: shared secret %w", e.URL, err)
		}
		switch ttl := e.ttl(); {
		case ttl < time.Second || ttl%time.Second != 0:
			return fmt.Errorf("TURN server %q: ttl %s is not a positive whole number of seconds", e.URL, e.TTL)
		case ttl > maxTTL:
			return fmt.Errorf("TURN server %q: ttl %s is over BBB's limit of %d seconds", e.URL, e.TTL, math.MaxInt32)
		}
	}
	return nil
}

// checkURL accepts scheme:host[:port], plus ?transport=udp|tcp for TURN
// (RFC 7064, RFC 7065), with host a name, an IPv4 address or a bracketed
// IPv6 address.
func checkURL(u string, schemes ...string) error {
	if err := checkValue(u); err != nil {
		return err
	}
	i := slices.IndexFunc(schemes, func(s string) bool { return strings.HasPrefix(u, s) })
	if i < 0 {
		return fmt.Errorf("must start with %s", strings.Join(schemes, " or "))
	}
	rest := u[len(schemes[i]):]
	if strings.HasPrefix(rest, "//") {
		return fmt.Errorf("no // after %s: write %shost:port", schemes[i], schemes[i])
	}
	hostport, query, hasQuery := strings.Cut(rest, "?")
	if hasQuery {
		if schemes[i] == "stun:" {
			return errors.New("a STUN URL takes no ?query")
		}
		if query != "transport=udp" && query != "transport=tcp" {
			return fmt.Errorf("query %q: only transport=udp or transport=tcp", query)
		}
	}
	var host, port string
	hasPort := false
	switch {
	case strings.HasPrefix(hostport, "["):
		end := strings.Index(hostport, "]")
		if end < 0 {
			return errors.New("[ without ]")
		}
		host = hostport[1:end]
		if ip := net.ParseIP(host); ip == nil || !strings.Contains(host, ":") {
			return fmt.Errorf("%q is not an IPv6 address", host)
		}
		if after := hostport[end+1:]; after != "" {
			if port, hasPort = strings.CutPrefix(after, ":"); !hasPort {
				return fmt.Errorf("%q after the address", after)
			}
		}
	default:
		host, port, hasPort = strings.Cut(hostport, ":")
		if strings.Contains(port, ":") {
			return errors.New("IPv6 addresses go in brackets: [2001:db8::1]:3478")
		}
		if host == "" {
			return errors.New("no host")
		}
		if strings.ContainsFunc(host, func(r rune) bool { return !isHostChar(r) }) {
			return fmt.Errorf("%q is not a host name or IPv4 address (letters, digits, - . _ only)", host)
		}
	}
	if hasPort {
		if n, err := strconv.Atoi(port); err != nil || strings.Trim(port, "0123456789") != "" || n < 1 || n > 65535 {
			return fmt.Errorf("port %q is not a number from 1 to 65535", port)
		}
	}
	return nil
}

func isHostChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_'
}

// checkValue refuses what bbb-web cannot get back out of the file as
// written: invalid UTF-8, control characters (XML cannot carry most of
// them), and ${ (Spring would take it for a property placeholder).
func checkValue(v string) error {
	switch {
	case !utf8.ValidString(v):
		return errors.New("is not valid UTF-8")
	case strings.ContainsFunc(v, unicode.IsControl):
		return errors.New("contains a control character")
	case strings.Contains(v, "${"):
		return errors.New("contains ${, which Spring would read as a property placeholder")
	}
	return nil
}

const header = `<?xml version="1.0" encoding="UTF-8"?>
<!--
    Managed by bbb-agent, which rewrites this file whenever the TURN servers
    it is given change: edits made here will be replaced. bbb-web reads this
    file at start only, so bbb-agent restarts bbb-web to apply a change.
-->
<beans xmlns="http://www.springframework.org/schema/beans"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xsi:schemaLocation="http://www.springframework.org/schema/beans
            http://www.springframework.org/schema/beans/spring-beans-2.5.xsd">
`

// Render returns the turn-stun-servers.xml for s: a Spring beans file with a
// StunServer bean per STUN URL (stun1, stun2, ...), a TurnServer bean per
// TURN entry (turn1, ...), and the stunTurnService bean that refers to them,
// all in Normalize order so the same set always renders the same bytes. The
// service's stunServers, turnServers and remoteIceCandidates sets are always
// written, empty when there is nothing to put in them, because bbb-web walks
// them without checking for null.
func Render(s Set) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	s = s.Normalize()
	var b bytes.Buffer
	b.WriteString(header)
	for i, u := range s.STUN {
		fmt.Fprintf(&b, "\n    <bean id=\"stun%d\" class=%q>\n", i+1, classStunServer)
		writeArg(&b, 0, u)
		b.WriteString("    </bean>\n")
	}
	for i, e := range s.TURN {
		fmt.Fprintf(&b, "\n    <bean id=\"turn%d\" class=%q>\n", i+1, classTurnServer)
		writeArg(&b, 0, e.Secret)
		writeArg(&b, 1, e.URL)
		writeArg(&b, 2, strconv.FormatInt(int64(e.TTL/time.Second), 10))
		b.WriteString("    </bean>\n")
	}
	fmt.Fprintf(&b, "\n    <bean id=%q class=%q>\n", stunTurnServiceBeanID, classStunTurnService)
	writeRefs(&b, "stunServers", "stun", len(s.STUN))
	writeRefs(&b, "turnServers", "turn", len(s.TURN))
	writeRefs(&b, "remoteIceCandidates", "", 0)
	b.WriteString("    </bean>\n</beans>\n")
	return b.Bytes(), nil
}

func writeArg(b *bytes.Buffer, index int, value string) {
	fmt.Fprintf(b, "        <constructor-arg index=\"%d\" value=\"", index)
	// Validate has refused everything EscapeText would have to replace.
	_ = xml.EscapeText(b, []byte(value))
	b.WriteString("\"/>\n")
}

func writeRefs(b *bytes.Buffer, property, prefix string, n int) {
	fmt.Fprintf(b, "        <property name=%q>\n            <set>\n", property)
	for i := range n {
		fmt.Fprintf(b, "                <ref bean=\"%s%d\"/>\n", prefix, i+1)
	}
	b.WriteString("            </set>\n        </property>\n")
}

// The parts of a Spring beans file Parse looks at. Tags without a namespace
// match the beans namespace and none.
type xmlBeans struct {
	XMLName xml.Name
	Beans   []xmlBean `xml:"bean"`
}

type xmlBean struct {
	ID    string    `xml:"id,attr"`
	Name  string    `xml:"name,attr"`
	Class string    `xml:"class,attr"`
	Args  []xmlArg  `xml:"constructor-arg"`
	Props []xmlProp `xml:"property"`
}

type xmlArg struct {
	Index     *string `xml:"index,attr"`
	Value     *string `xml:"value,attr"`
	ValueElem *string `xml:"value"`
}

type xmlProp struct {
	Name string      `xml:"name,attr"`
	Set  *xmlRefList `xml:"set"`
	List *xmlRefList `xml:"list"`
}

type xmlRefList struct {
	Refs  []xmlRef  `xml:"ref"`
	Beans []xmlBean `xml:"bean"`
}

type xmlRef struct {
	Bean  string `xml:"bean,attr"`
	Local string `xml:"local,attr"`
}

// Parse reads a turn-stun-servers.xml back into the Set bbb-web would serve
// from it: the StunServer and TurnServer beans the stunTurnService bean's
// stunServers and turnServers properties refer to (by <ref bean> or
// <ref local>, or defined inline), in Normalize order. Other beans, remote
// ICE candidates, comments and layout are ignored; constructor arguments are
// taken by index, or in order where they have none. Malformed XML, a file
// without exactly one StunTurnService bean, a reference to a bean that is
// missing or of the wrong class, or a server bean whose arguments bbb-web
// could not construct it from, is an error.
func Parse(data []byte) (Set, error) {
	var doc xmlBeans
	d := xml.NewDecoder(bytes.NewReader(data))
	if err := d.Decode(&doc); err == io.EOF {
		return Set{}, errors.New("no XML element in the file")
	} else if err != nil {
		return Set{}, fmt.Errorf("malformed XML: %w", err)
	}
	if err := checkTrailing(d); err != nil {
		return Set{}, fmt.Errorf("malformed XML: %w", err)
	}
	if doc.XMLName.Local != "beans" {
		return Set{}, fmt.Errorf("root element is <%s>, not <beans>", doc.XMLName.Local)
	}
	byName := map[string]*xmlBean{}
	var service *xmlBean
	for i := range doc.Beans {
		b := &doc.Beans[i]
		for _, n := range beanNames(b) {
			byName[n] = b
		}
		if b.Class == classStunTurnService {
			if service != nil {
				return Set{}, errors.New("more than one StunTurnService bean")
			}
			service = b
		}
	}
	if service == nil {
		return Set{}, errors.New("no StunTurnService bean")
	}
	var s Set
	for _, p := range service.Props {
		list := p.Set
		if list == nil {
			list = p.List
		}
		if list == nil || (p.Name != "stunServers" && p.Name != "turnServers") {
			continue
		}
		beans, err := resolve(list, byName)
		if err != nil {
			return Set{}, fmt.Errorf("%s: %w", p.Name, err)
		}
		for _, b := range beans {
			if err := s.add(p.Name, b); err != nil {
				return Set{}, fmt.Errorf("bean %q: %w", b.ID, err)
			}
		}
	}
	return s.Normalize(), nil
}

// checkTrailing reads what follows the root element: only comments,
// processing instructions and white space may.
func checkTrailing(d *xml.Decoder) error {
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			return fmt.Errorf("element <%s> after the root element", t.Name.Local)
		case xml.CharData:
			if len(bytes.TrimSpace(t)) > 0 {
				return errors.New("text after the root element")
			}
		}
	}
}

// beanNames is a bean's id and the aliases in its name attribute.
func beanNames(b *xmlBean) []string {
	names := strings.FieldsFunc(b.Name, func(r rune) bool { return r == ',' || r == ';' || unicode.IsSpace(r) })
	if b.ID != "" {
		names = append(names, b.ID)
	}
	return names
}

func resolve(list *xmlRefList, byName map[string]*xmlBean) ([]*xmlBean, error) {
	var beans []*xmlBean
	for _, r := range list.Refs {
		name := cmp.Or(r.Bean, r.Local)
		b, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("refers to bean %q, which is not defined", name)
		}
		beans = append(beans, b)
	}
	for i := range list.Beans {
		beans = append(beans, &list.Beans[i])
	}
	return beans, nil
}

func (s *Set) add(property string, b *xmlBean) error {
	switch {
	case property == "stunServers" && b.Class == classStunServer:
		args, err := constructorArgs(b, 1)
		if err != nil {
			return err
		}
		s.STUN = append(s.STUN, args[0])
	case property == "turnServers" && b.Class == classTurnServer:
		args, err := constructorArgs(b, 3)
		if err != nil {
			return err
		}
		secs, err := strconv.ParseInt(strings.TrimSpace(args[2]), 10, 32)
		if err != nil || secs < 1 {
			return fmt.Errorf("ttl %q is not a positive number of seconds", args[2])
		}
		s.TURN = append(s.TURN, TURNEntry{Secret: args[0], URL: args[1], TTL: time.Duration(secs) * time.Second})
	default:
		return fmt.Errorf("class %q does not belong in %s", b.Class, property)
	}
	return nil
}

// constructorArgs returns a bean's n constructor arguments, placing those
// with an index there and the others in the free places in order, as Spring
// does for arguments of one type.
func constructorArgs(b *xmlBean, n int) ([]string, error) {
	if len(b.Args) != n {
		return nil, fmt.Errorf("%d constructor arguments, want %d", len(b.Args), n)
	}
	args := make([]string, n)
	set := make([]bool, n)
	var unindexed []string
	for _, a := range b.Args {
		var v string
		switch {
		case a.Value != nil:
			v = *a.Value
		case a.ValueElem != nil:
			v = *a.ValueElem
		default:
			return nil, errors.New("a constructor argument without a value")
		}
		if a.Index == nil {
			unindexed = append(unindexed, v)
			continue
		}
		i, err := strconv.Atoi(strings.TrimSpace(*a.Index))
		if err != nil || i < 0 || i >= n || set[i] {
			return nil, fmt.Errorf("constructor argument index %q: want each of 0 to %d once", *a.Index, n-1)
		}
		args[i], set[i] = v, true
	}
	for i := range args {
		if !set[i] {
			args[i], unindexed = unindexed[0], unindexed[1:]
		}
	}
	return args, nil
}
