package agentapi

import (
	"encoding/json"
	"strconv"
	"strings"
	"unique"
	"unsafe"

	"github.com/bbb-agent/bbb-agent/fleet"
)

// DecodeReport decodes a report body exactly as json.Unmarshal does, and
// faster: every node reports every few seconds, and a balancer of 10,000
// nodes decodes 2,000 reports a second. A body in the form bbb-agent sends
// (the field names as written, strings without escapes, plain numbers) is
// read by a scanner made for this one type; anything else, and every error,
// goes to json.Unmarshal, whose answer and error messages are the rule.
func DecodeReport(data []byte, r *ReportRequest) error {
	return decodeReport(data, r, false)
}

// DecodeReportBorrowing is DecodeReport, except that the meeting IDs it
// reads on the fast path are not copied: the strings of r.MeetingIDs may
// share data's memory, and change with it. The caller leaves data as it is
// for as long as it uses them, and copies those it keeps longer
// (CloneStrings). A balancer only hashes most reports' IDs: at 10,000
// nodes, 2,000 reports a second of dozens of IDs each.
func DecodeReportBorrowing(data []byte, r *ReportRequest) error {
	return decodeReport(data, r, true)
}

// CloneStrings is a copy of ss that shares no memory with it, nil for nil.
func CloneStrings(ss []string) []string {
	if ss == nil {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.Clone(s)
	}
	return out
}

func decodeReport(data []byte, r *ReportRequest, borrow bool) error {
	var fast ReportRequest
	if d := (reportScanner{b: data, borrow: borrow}); d.report(&fast) {
		*r = fast
		return nil
	}
	// Into a report of its own, so that r, which json.Unmarshal would
	// send to the heap, can live on its caller's stack.
	slow := new(ReportRequest)
	err := json.Unmarshal(data, slow)
	*r = *slow
	return err
}

// reportScanner reads the subset of JSON that DecodeReport takes on its
// fast path. Each method says false when the input leaves that subset.
type reportScanner struct {
	b []byte
	i int
	// borrow: strings reads strings that share b's memory.
	borrow bool
}

func (d *reportScanner) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// consume skips white space and then c.
func (d *reportScanner) consume(c byte) bool {
	d.space()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// peek skips white space and says whether c comes next.
func (d *reportScanner) peek(c byte) bool {
	d.space()
	return d.i < len(d.b) && d.b[d.i] == c
}

// str reads a string of printable ASCII without escapes (the bytes, not a
// copy).
func (d *reportScanner) str() ([]byte, bool) {
	if !d.consume('"') {
		return nil, false
	}
	start := d.i
	for ; d.i < len(d.b); d.i++ {
		switch c := d.b[d.i]; {
		case c == '"':
			d.i++
			return d.b[start : d.i-1], true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return nil, false
		}
	}
	return nil, false
}

// text reads a string (a copy).
func (d *reportScanner) text() (string, bool) {
	s, ok := d.str()
	return string(s), ok
}

// shared reads a string most nodes send alike (a BBB version, an error's
// words): one copy for all of them, not one a node (unique.Make).
func (d *reportScanner) shared() (string, bool) {
	s, ok := d.str()
	return unique.Make(string(s)).Value(), ok
}

// number reads a JSON number's text.
func (d *reportScanner) number() ([]byte, bool) {
	d.space()
	start := d.i
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(d.b) && d.b[d.i] == '0':
		d.i++
	case d.i < len(d.b) && d.b[d.i] >= '1' && d.b[d.i] <= '9':
		d.digits()
	default:
		return nil, false
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if !d.digits() {
			return nil, false
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if !d.digits() {
			return nil, false
		}
	}
	return d.b[start:d.i], true
}

// digits reads one or more decimal digits.
func (d *reportScanner) digits() bool {
	start := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	return d.i > start
}

func (d *reportScanner) int64() (int64, bool) {
	t, ok := d.number()
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(t), 10, 64) // a fraction or exponent fails: json.Unmarshal explains
	return v, err == nil
}

func (d *reportScanner) int() (int, bool) {
	v, ok := d.int64()
	return int(v), ok && int64(int(v)) == v
}

func (d *reportScanner) uint64() (uint64, bool) {
	t, ok := d.number()
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(string(t), 10, 64)
	return v, err == nil
}

func (d *reportScanner) float64() (float64, bool) {
	t, ok := d.number()
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(t), 64)
	return v, err == nil
}

func (d *reportScanner) bool() (bool, bool) {
	d.space()
	switch {
	case len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "true":
		d.i += 4
		return true, true
	case len(d.b)-d.i >= 5 && string(d.b[d.i:d.i+5]) == "false":
		d.i += 5
		return false, true
	}
	return false, false
}

// object reads an object, calling field for each member with the scanner
// at its value; field says false for a name it does not take.
func (d *reportScanner) object(field func(name []byte) bool) bool {
	if !d.consume('{') {
		return false
	}
	if d.consume('}') {
		return true
	}
	for {
		name, ok := d.str()
		if !ok || !d.consume(':') || !field(name) {
			return false
		}
		if d.consume('}') {
			return true
		}
		if !d.consume(',') {
			return false
		}
	}
}

func (d *reportScanner) report(r *ReportRequest) bool {
	ok := d.object(func(name []byte) bool {
		var ok bool
		switch string(name) {
		case "node":
			r.Node, ok = d.text()
		case "seq":
			r.Seq, ok = d.int64()
		case "run":
			r.Run, ok = d.text()
		case "load":
			ok = d.load(&r.Load)
		case "meeting_ids":
			r.MeetingIDs, ok = d.strings()
		case "leaving":
			r.Leaving, ok = d.bool()
		}
		return ok
	})
	d.space()
	return ok && d.i == len(d.b)
}

// strings reads an array of strings: never nil, as json.Unmarshal
// gives [] (MeetingIDs' nil means "not sent"). The strings share one
// allocation: a report's dozens of meeting IDs cost two, not one each; or,
// borrowed, b's memory. Its frame is small (no array of the strings'
// places on the stack): a streamed report is decoded on its stream's
// small stack (balancer's reportInline).
func (d *reportScanner) strings() ([]string, bool) {
	if !d.consume('[') {
		return nil, false
	}
	if d.consume(']') {
		return []string{}, true
	}
	n, total := d.countStrings()
	out := make([]string, 0, n)
	var all []byte // the copies, appended only: a string in it stays as it is
	if !d.borrow {
		all = make([]byte, 0, total)
	}
	for {
		s, ok := d.str()
		if !ok {
			return nil, false
		}
		if !d.borrow {
			all = append(all, s...)
			s = all[len(all)-len(s):]
		}
		out = append(out, unsafe.String(unsafe.SliceData(s), len(s)))
		if d.consume(']') {
			return out, true
		}
		if !d.consume(',') {
			return nil, false
		}
	}
}

// countStrings counts the strings of the array ahead, up to its end, and
// their bytes, by their quotes (str takes no escapes). It checks nothing:
// strings does.
func (d *reportScanner) countStrings() (n, total int) {
	in, start := false, 0
	for i := d.i; i < len(d.b); i++ {
		switch c := d.b[i]; {
		case c == '"' && in:
			in, n, total = false, n+1, total+i-start
		case c == '"':
			in, start = true, i+1
		case c == ']' && !in:
			return n, total
		}
	}
	return n, total
}

func (d *reportScanner) load(l *fleet.Load) bool {
	return d.object(func(name []byte) bool {
		var ok bool
		switch string(name) {
		case "cpu_percent":
			l.CPUPercent, ok = d.float64()
		case "cpu_cores":
			l.CPUCores, ok = d.int()
		case "load1":
			l.Load1, ok = d.float64()
		case "load5":
			l.Load5, ok = d.float64()
		case "load15":
			l.Load15, ok = d.float64()
		case "mem_total_bytes":
			l.MemTotalBytes, ok = d.uint64()
		case "mem_used_bytes":
			l.MemUsedBytes, ok = d.uint64()
		case "net_rx_bps":
			l.NetRxBytesPerSec, ok = d.float64()
		case "net_tx_bps":
			l.NetTxBytesPerSec, ok = d.float64()
		case "disk_free_bytes":
			l.DiskFreeBytes, ok = d.uint64()
		case "meetings":
			l.Meetings, ok = d.int()
		case "participants":
			l.Participants, ok = d.int()
		case "voice":
			l.Voice, ok = d.int()
		case "video":
			l.Video, ok = d.int()
		case "listeners":
			l.Listeners, ok = d.int()
		case "largest_meeting":
			l.LargestMeeting, ok = d.int()
		case "recording_backlog":
			l.RecordingBacklog, ok = d.int()
		case "bbb_healthy":
			l.BBBHealthy, ok = d.bool()
		case "bbb_error":
			l.BBBError, ok = d.shared()
		case "turn_healthy":
			l.TURNHealthy, ok = d.bool()
		case "bbb_version":
			l.BBBVersion, ok = d.shared()
		}
		return ok
	})
}
