package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
	"unique"

	"github.com/bbb-agent/bbb-agent/fleet"
)

// A node's load is stored in load_json (of node_reports on SQLite, of nodes
// on PostgreSQL) as a JSON array of its values, after the array's format
// version:
//
//	[1,cpu_percent,cpu_cores,load1,load5,load15,mem_total_bytes,mem_used_bytes,
//	 net_rx_bps,net_tx_bps,disk_free_bytes,meetings,participants,voice,video,
//	 listeners,largest_meeting,recording_backlog,bbb_healthy,bbb_error,
//	 turn_healthy,bbb_version]
//
// (the names are fleet.Load's JSON names). The row is rewritten with every
// report, 2,000 times a second at 10,000 nodes: the array is under half the
// size of the object with its names (about 190 bytes against 420), so the
// pages that each flush rewrites (node_reports' on SQLite) are fewer and fit
// the writer's page cache. Rows written before this format hold the JSON object,
// which decodeLoad still reads. A field added to fleet.Load is appended to
// the array; a shorter array leaves the fields it lacks zero.
const loadFormat = 1

// appendLoad appends l in the stored format. A float that JSON cannot carry
// (NaN, ±Inf) is stored as 0.
func appendLoad(b []byte, l fleet.Load) []byte {
	b = append(b, '[')
	b = strconv.AppendInt(b, loadFormat, 10)
	f := func(v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			v = 0
		}
		// As encoding/json writes it: no exponent between 1e-6 and 1e21.
		format := byte('f')
		if a := math.Abs(v); a != 0 && (a < 1e-6 || a >= 1e21) {
			format = 'e'
		}
		b = strconv.AppendFloat(append(b, ','), v, format, -1, 64)
	}
	i := func(v int) { b = strconv.AppendInt(append(b, ','), int64(v), 10) }
	u := func(v uint64) { b = strconv.AppendUint(append(b, ','), v, 10) }
	t := func(v bool) { b = strconv.AppendBool(append(b, ','), v) }
	s := func(v string) { b = appendJSONString(append(b, ','), v) }
	f(l.CPUPercent)
	i(l.CPUCores)
	f(l.Load1)
	f(l.Load5)
	f(l.Load15)
	u(l.MemTotalBytes)
	u(l.MemUsedBytes)
	f(l.NetRxBytesPerSec)
	f(l.NetTxBytesPerSec)
	u(l.DiskFreeBytes)
	i(l.Meetings)
	i(l.Participants)
	i(l.Voice)
	i(l.Video)
	i(l.Listeners)
	i(l.LargestMeeting)
	i(l.RecordingBacklog)
	t(l.BBBHealthy)
	s(l.BBBError)
	t(l.TURNHealthy)
	s(l.BBBVersion)
	return append(b, ']')
}

// appendJSONString appends v as a JSON string.
func appendJSONString(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			q, _ := json.Marshal(v) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, v...)
	return append(b, '"')
}

// decodeLoad reads a stored load: the array appendLoad writes, or the JSON
// object of rows written before it.
func decodeLoad(raw []byte) (fleet.Load, error) {
	var l fleet.Load
	p := loadParser{raw: raw}
	p.space()
	if p.i < len(raw) && raw[p.i] == '{' {
		err := json.Unmarshal(raw, &l)
		return l, err
	}
	if !p.byte('[') {
		return l, fmt.Errorf("stored load %.40q: not a JSON array or object", raw)
	}
	version, err := p.int()
	if err != nil {
		return l, fmt.Errorf("stored load %.40q: format version: %w", raw, err)
	}
	if version != loadFormat {
		return l, fmt.Errorf("stored load %.40q: format %d, this balancer reads %d: a newer balancer wrote it", raw, version, loadFormat)
	}
	for n := 1; ; n++ {
		if p.byte(']') {
			return l, p.end() // all values read, or an older, shorter array
		}
		if !p.byte(',') {
			return l, fmt.Errorf("stored load %.40q: want , before value %d", raw, n)
		}
		var err error
		switch n {
		case 1:
			l.CPUPercent, err = p.float()
		case 2:
			l.CPUCores, err = p.int()
		case 3:
			l.Load1, err = p.float()
		case 4:
			l.Load5, err = p.float()
		case 5:
			l.Load15, err = p.float()
		case 6:
			l.MemTotalBytes, err = p.uint()
		case 7:
			l.MemUsedBytes, err = p.uint()
		case 8:
			l.NetRxBytesPerSec, err = p.float()
		case 9:
			l.NetTxBytesPerSec, err = p.float()
		case 10:
			l.DiskFreeBytes, err = p.uint()
		case 11:
			l.Meetings, err = p.int()
		case 12:
			l.Participants, err = p.int()
		case 13:
			l.Voice, err = p.int()
		case 14:
			l.Video, err = p.int()
		case 15:
			l.Listeners, err = p.int()
		case 16:
			l.LargestMeeting, err = p.int()
		case 17:
			l.RecordingBacklog, err = p.int()
		case 18:
			l.BBBHealthy, err = p.bool()
		case 19:
			l.BBBError, err = p.shared()
		case 20:
			l.TURNHealthy, err = p.bool()
		case 21:
			l.BBBVersion, err = p.shared()
		default:
			return l, fmt.Errorf("stored load %.40q: more values than this balancer knows: a newer balancer wrote it", raw)
		}
		if err != nil {
			return l, fmt.Errorf("stored load %.40q: value %d: %w", raw, n, err)
		}
	}
}

// loadParser reads the values of a stored load array.
type loadParser struct {
	raw []byte
	i   int
}

func (p *loadParser) space() {
	for p.i < len(p.raw) && (p.raw[p.i] == ' ' || p.raw[p.i] == '\t' || p.raw[p.i] == '\n' || p.raw[p.i] == '\r') {
		p.i++
	}
}

// byte consumes c, after any space, if it is next.
func (p *loadParser) byte(c byte) bool {
	p.space()
	if p.i < len(p.raw) && p.raw[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *loadParser) end() error {
	p.space()
	if p.i != len(p.raw) {
		return fmt.Errorf("stored load %.40q: text after the array", p.raw)
	}
	return nil
}

// token is the next value's text: up to a comma, a bracket or space.
func (p *loadParser) token() []byte {
	p.space()
	start := p.i
	for p.i < len(p.raw) {
		switch p.raw[p.i] {
		case ',', ']', ' ', '\t', '\n', '\r':
			return p.raw[start:p.i]
		}
		p.i++
	}
	return p.raw[start:p.i]
}

func (p *loadParser) float() (float64, error) { return strconv.ParseFloat(string(p.token()), 64) }

func (p *loadParser) int() (int, error) {
	v, err := strconv.ParseInt(string(p.token()), 10, 64)
	return int(v), err
}

func (p *loadParser) uint() (uint64, error) { return strconv.ParseUint(string(p.token()), 10, 64) }

func (p *loadParser) bool() (bool, error) {
	switch t := string(p.token()); t {
	case "true":
		return true, nil
	case "false":
		return false, nil
	default:
		return false, fmt.Errorf("%q is not true or false", t)
	}
}

// string reads a JSON string.
// shared parses a string most nodes have alike (a BBB version, an error's
// words): one copy for the fleet, not one a node (unique.Make).
func (p *loadParser) shared() (string, error) {
	s, err := p.string()
	return unique.Make(s).Value(), err
}

func (p *loadParser) string() (string, error) {
	p.space()
	if p.i >= len(p.raw) || p.raw[p.i] != '"' {
		return "", errors.New("want a string")
	}
	start, escaped := p.i, false
	for p.i++; p.i < len(p.raw); p.i++ {
		switch p.raw[p.i] {
		case '\\':
			escaped = true
			p.i++ // the escaped byte
		case '"':
			p.i++
			if !escaped {
				return string(p.raw[start+1 : p.i-1]), nil
			}
			var s string
			err := json.Unmarshal(p.raw[start:p.i], &s)
			return s, err
		}
	}
	return "", errors.New("unterminated string")
}
