package agentapi

import (
	"encoding/binary"
	"fmt"
	"io"
)

// The report stream: an agent's reports over one connection of its own.
//
// An agent that reports every few seconds pays a whole HTTP exchange for
// each report, and so does the balancer: at 10,000 nodes the balancer
// spends about as much CPU on HTTP alone as on everything the reports ask
// of it (balancer.BenchmarkReportTransport). On the stream the agent sends
// only its reports, each framed by its length, and the balancer answers
// each with the status and body a POST PathReport would have had.
//
// The agent opens it with
//
//	GET PathReportStream HTTP/1.1
//	Connection: Upgrade
//	Upgrade: ReportStreamProtocol
//	Authorization: Bearer <credential>
//
// and the balancer answers 101 Switching Protocols. From then on the agent
// writes report frames (a 4-byte big-endian length, then a ReportRequest
// as JSON, at most MaxBodyBytes) and reads one answer frame for each (a
// 2-byte big-endian HTTP status, a 4-byte big-endian length, then the body,
// a ReportResponse or an Error). The credential of the upgrade is checked
// on every report, as on POST PathReport: a rotated or removed credential
// is refused at once (401) and the stream stays open. Either side may close
// the stream at any time; the agent then reports by POST PathReport, which
// stays the way every agent can report. A balancer that does not know the
// stream, or a proxy that does not pass upgrades, answers something other
// than 101, and the agent reports by POST.
const (
	PathReportStream     = "/agent/v1/report-stream"
	ReportStreamProtocol = "bbb-agent-report/1"
)

// Frame header sizes of the report stream.
const (
	ReportFrameHeaderBytes = 4
	AnswerFrameHeaderBytes = 6
)

// AppendReportFrame appends a report frame carrying body (a ReportRequest
// as JSON) to dst.
func AppendReportFrame(dst, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	return append(dst, body...)
}

// ReadReportFrameHeader reads a report frame's header from r into hdr and
// returns the length of the body that follows. io.EOF means the stream
// ended between frames.
func ReadReportFrameHeader(r io.Reader, hdr *[ReportFrameHeaderBytes]byte) (int64, error) {
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	return int64(binary.BigEndian.Uint32(hdr[:])), nil
}

// PutAnswerFrameHeader writes an answer frame's header (status, and the
// length of the body that follows) into hdr.
func PutAnswerFrameHeader(hdr []byte, status, length int) {
	binary.BigEndian.PutUint16(hdr, uint16(status))
	binary.BigEndian.PutUint32(hdr[2:], uint32(length))
}

// ReadAnswerFrame reads one answer frame of at most max bytes of body from
// r: its HTTP status and body.
func ReadAnswerFrame(r io.Reader, max int) (status int, body []byte, err error) {
	var hdr [AnswerFrameHeaderBytes]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	status = int(binary.BigEndian.Uint16(hdr[:]))
	n := binary.BigEndian.Uint32(hdr[2:])
	if status < 100 || status > 599 {
		return 0, nil, fmt.Errorf("report stream: answer frame with status %d: the stream is out of step", status)
	}
	if int64(n) > int64(max) {
		return 0, nil, fmt.Errorf("report stream: an answer frame of %d bytes, at most %d: the stream is out of step", n, max)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, fmt.Errorf("report stream: reading an answer frame: %w", err)
	}
	return status, body, nil
}
