package bbb

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// Envelope is the part every API response shares. A FAILED response is
// nothing but an Envelope.
type Envelope struct {
	XMLName    xml.Name `xml:"response"`
	ReturnCode string   `xml:"returncode"`
	MessageKey string   `xml:"messageKey,omitempty"`
	Message    string   `xml:"message,omitempty"`
}

// Err returns the envelope as an *APIError when it is FAILED, else nil.
func (e Envelope) Err(call string) error {
	if e.ReturnCode == ReturnSuccess {
		return nil
	}
	key := e.MessageKey
	if key == "" {
		key = KeyInternalError
	}
	return &APIError{Call: call, MessageKey: key, Message: e.Message}
}

// FailedResponse builds the FAILED envelope for an error.
func FailedResponse(err *APIError) Envelope {
	return Envelope{ReturnCode: ReturnFailed, MessageKey: err.MessageKey, Message: err.Message}
}

// RootResponse answers GET /bigbluebutton/api.
type RootResponse struct {
	XMLName             xml.Name `xml:"response"`
	ReturnCode          string   `xml:"returncode"`
	Version             string   `xml:"version"`
	APIVersion          string   `xml:"apiVersion,omitempty"`
	BBBVersion          string   `xml:"bbbVersion,omitempty"`
	GraphqlWebsocketURL string   `xml:"graphqlWebsocketUrl,omitempty"`
}

// CreateResponse answers create.
type CreateResponse struct {
	XMLName              xml.Name `xml:"response"`
	ReturnCode           string   `xml:"returncode"`
	MeetingID            string   `xml:"meetingID"`
	InternalMeetingID    string   `xml:"internalMeetingID"`
	ParentMeetingID      string   `xml:"parentMeetingID"`
	AttendeePW           string   `xml:"attendeePW"`
	ModeratorPW          string   `xml:"moderatorPW"`
	CreateTime           int64    `xml:"createTime"`
	VoiceBridge          string   `xml:"voiceBridge"`
	DialNumber           string   `xml:"dialNumber"`
	CreateDate           string   `xml:"createDate"`
	HasUserJoined        bool     `xml:"hasUserJoined"`
	Duration             int      `xml:"duration"`
	HasBeenForciblyEnded bool     `xml:"hasBeenForciblyEnded"`
	MessageKey           string   `xml:"messageKey,omitempty"`
	Message              string   `xml:"message,omitempty"`
}

// JoinResponse answers join with redirect=false.
type JoinResponse struct {
	XMLName      xml.Name `xml:"response"`
	ReturnCode   string   `xml:"returncode"`
	MessageKey   string   `xml:"messageKey,omitempty"`
	Message      string   `xml:"message,omitempty"`
	MeetingID    string   `xml:"meeting_id"`
	UserID       string   `xml:"user_id"`
	AuthToken    string   `xml:"auth_token"`
	SessionToken string   `xml:"session_token"`
	GuestStatus  string   `xml:"guestStatus"`
	URL          string   `xml:"url"`
}

// IsMeetingRunningResponse answers isMeetingRunning.
type IsMeetingRunningResponse struct {
	XMLName    xml.Name `xml:"response"`
	ReturnCode string   `xml:"returncode"`
	Running    bool     `xml:"running"`
}

// Attendee is one user in a meeting.
type Attendee struct {
	UserID          string `xml:"userID"`
	FullName        string `xml:"fullName"`
	Role            string `xml:"role"`
	IsPresenter     bool   `xml:"isPresenter"`
	IsListeningOnly bool   `xml:"isListeningOnly"`
	HasJoinedVoice  bool   `xml:"hasJoinedVoice"`
	HasVideo        bool   `xml:"hasVideo"`
	ClientType      string `xml:"clientType"`
}

// Roles of an attendee.
const (
	RoleModerator = "MODERATOR"
	RoleViewer    = "VIEWER"
)

// Meeting is a meeting as getMeetings and getMeetingInfo describe it.
type Meeting struct {
	MeetingName           string     `xml:"meetingName"`
	MeetingID             string     `xml:"meetingID"`
	InternalMeetingID     string     `xml:"internalMeetingID"`
	CreateTime            int64      `xml:"createTime"`
	CreateDate            string     `xml:"createDate"`
	VoiceBridge           string     `xml:"voiceBridge"`
	DialNumber            string     `xml:"dialNumber"`
	AttendeePW            string     `xml:"attendeePW"`
	ModeratorPW           string     `xml:"moderatorPW"`
	Running               bool       `xml:"running"`
	Duration              int        `xml:"duration"`
	HasUserJoined         bool       `xml:"hasUserJoined"`
	Recording             bool       `xml:"recording"`
	HasBeenForciblyEnded  bool       `xml:"hasBeenForciblyEnded"`
	StartTime             int64      `xml:"startTime"`
	EndTime               int64      `xml:"endTime"`
	ParticipantCount      int        `xml:"participantCount"`
	ListenerCount         int        `xml:"listenerCount"`
	VoiceParticipantCount int        `xml:"voiceParticipantCount"`
	VideoCount            int        `xml:"videoCount"`
	MaxUsers              int        `xml:"maxUsers"`
	ModeratorCount        int        `xml:"moderatorCount"`
	Attendees             []Attendee `xml:"attendees>attendee"`
	Metadata              Metadata   `xml:"metadata"`
	IsBreakout            bool       `xml:"isBreakout"`
	// Breakout rooms only.
	ParentMeetingID string `xml:"parentMeetingID,omitempty"`
	Sequence        int    `xml:"sequence,omitempty"`
	FreeJoin        *bool  `xml:"freeJoin,omitempty"`
	// Parents of breakout rooms only: the internal IDs of their rooms.
	BreakoutRooms BreakoutRooms `xml:"breakoutRooms,omitempty"`
}

// BreakoutRooms lists a parent meeting's rooms as
// <breakoutRooms><breakout>ID</breakout>...</breakoutRooms>, and nothing at
// all when there are none.
type BreakoutRooms []string

// MarshalXML writes the rooms as <breakout> children.
func (b BreakoutRooms) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	return e.EncodeElement(struct {
		Breakout []string `xml:"breakout"`
	}{b}, start)
}

// UnmarshalXML reads the <breakout> children.
func (b *BreakoutRooms) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	var v struct {
		Breakout []string `xml:"breakout"`
	}
	if err := d.DecodeElement(&v, &start); err != nil {
		return err
	}
	*b = v.Breakout
	return nil
}

// GetMeetingInfoResponse answers getMeetingInfo: the meeting's fields sit
// directly in the response element.
type GetMeetingInfoResponse struct {
	XMLName    xml.Name `xml:"response"`
	ReturnCode string   `xml:"returncode"`
	Meeting
}

// GetMeetingsResponse answers getMeetings.
type GetMeetingsResponse struct {
	XMLName    xml.Name  `xml:"response"`
	ReturnCode string    `xml:"returncode"`
	Meetings   []Meeting `xml:"meetings>meeting"`
	MessageKey string    `xml:"messageKey,omitempty"`
	Message    string    `xml:"message,omitempty"`
}

// MarshalXML writes an empty <meetings/> when there are none, as BBB does.
func (r GetMeetingsResponse) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	type plain struct {
		XMLName    xml.Name `xml:"response"`
		ReturnCode string   `xml:"returncode"`
		Meetings   meetings `xml:"meetings"`
		MessageKey string   `xml:"messageKey,omitempty"`
		Message    string   `xml:"message,omitempty"`
	}
	return e.Encode(plain{ReturnCode: r.ReturnCode, Meetings: meetings{Meeting: r.Meetings}, MessageKey: r.MessageKey, Message: r.Message})
}

type meetings struct {
	Meeting []Meeting `xml:"meeting"`
}

// A getMeetings answer with meetings, assembled from pieces encoded apart
// (a balancer keeps each node's meetings encoded): GetMeetingsHead, the
// meetings' elements (AppendMeetings) in any number of runs, then
// GetMeetingsTail are byte for byte what MarshalResponse writes for a
// GetMeetingsResponse of those meetings. With none, MarshalResponse's
// answer (an empty <meetings/> and noMeetings) is the one to send.
const (
	GetMeetingsHead = xml.Header + `<response><returncode>` + ReturnSuccess + `</returncode><meetings>`
	GetMeetingsTail = `</meetings></response>`
)

// AppendMeetings appends the meetings' <meeting> elements to dst.
func AppendMeetings(dst []byte, ms []Meeting) ([]byte, error) {
	b := bytes.NewBuffer(dst)
	e := xml.NewEncoder(b)
	start := xml.StartElement{Name: xml.Name{Local: "meeting"}}
	for i := range ms {
		if err := e.EncodeElement(&ms[i], start); err != nil {
			return dst, fmt.Errorf("encoding meeting %q: %w", ms[i].MeetingID, err)
		}
	}
	if err := e.Close(); err != nil {
		return dst, err
	}
	return b.Bytes(), nil
}

// EndResponse answers end.
type EndResponse = Envelope

// InsertDocumentResponse answers insertDocument.
type InsertDocumentResponse = Envelope

// Image is a preview image of a playback format.
type Image struct {
	Alt    string `xml:"alt,attr,omitempty"`
	Height int    `xml:"height,attr,omitempty"`
	Width  int    `xml:"width,attr,omitempty"`
	URL    string `xml:",chardata"`
}

// Preview holds a playback format's preview images.
type Preview struct {
	Images []Image `xml:"images>image"`
}

// PlaybackFormat is one way a recording can be played back.
type PlaybackFormat struct {
	Type           string   `xml:"type"`
	URL            string   `xml:"url"`
	ProcessingTime int64    `xml:"processingTime"`
	Length         int      `xml:"length"`
	Size           int64    `xml:"size,omitempty"`
	Preview        *Preview `xml:"preview,omitempty"`
}

// Recording is one recording as getRecordings describes it.
type Recording struct {
	RecordID          string           `xml:"recordID"`
	MeetingID         string           `xml:"meetingID"`
	InternalMeetingID string           `xml:"internalMeetingID"`
	Name              string           `xml:"name"`
	IsBreakout        bool             `xml:"isBreakout"`
	Published         bool             `xml:"published"`
	State             string           `xml:"state"`
	StartTime         int64            `xml:"startTime"`
	EndTime           int64            `xml:"endTime"`
	Participants      int              `xml:"participants"`
	RawSize           int64            `xml:"rawSize"`
	Metadata          Metadata         `xml:"metadata"`
	Size              int64            `xml:"size"`
	Playback          []PlaybackFormat `xml:"playback>format"`
}

// GetRecordingsResponse answers getRecordings.
type GetRecordingsResponse struct {
	XMLName    xml.Name    `xml:"response"`
	ReturnCode string      `xml:"returncode"`
	Recordings []Recording `xml:"recordings>recording"`
	// TotalElements is the number of matching recordings without paging;
	// BBB 2.6+ sends it when offset or limit is given.
	TotalElements *int   `xml:"totalElements,omitempty"`
	MessageKey    string `xml:"messageKey,omitempty"`
	Message       string `xml:"message,omitempty"`
}

// MarshalXML writes an empty <recordings/> when there are none, as BBB does.
func (r GetRecordingsResponse) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	type plain struct {
		XMLName       xml.Name   `xml:"response"`
		ReturnCode    string     `xml:"returncode"`
		Recordings    recordings `xml:"recordings"`
		TotalElements *int       `xml:"totalElements,omitempty"`
		MessageKey    string     `xml:"messageKey,omitempty"`
		Message       string     `xml:"message,omitempty"`
	}
	return e.Encode(plain{ReturnCode: r.ReturnCode, Recordings: recordings{Recording: r.Recordings}, TotalElements: r.TotalElements,
		MessageKey: r.MessageKey, Message: r.Message})
}

type recordings struct {
	Recording []Recording `xml:"recording"`
}

// PublishRecordingsResponse answers publishRecordings.
type PublishRecordingsResponse struct {
	XMLName    xml.Name `xml:"response"`
	ReturnCode string   `xml:"returncode"`
	Published  bool     `xml:"published"`
}

// UpdateRecordingsResponse answers updateRecordings.
type UpdateRecordingsResponse struct {
	XMLName    xml.Name `xml:"response"`
	ReturnCode string   `xml:"returncode"`
	Updated    bool     `xml:"updated"`
}

// DeleteRecordingsResponse answers deleteRecordings.
type DeleteRecordingsResponse struct {
	XMLName    xml.Name `xml:"response"`
	ReturnCode string   `xml:"returncode"`
	Deleted    bool     `xml:"deleted"`
}

// Meta is one metadata entry: <key>value</key>.
type Meta struct {
	Key   string
	Value string
}

// Metadata is a meeting's or recording's metadata, in the order given.
// It marshals as <metadata><key>value</key>...</metadata>.
type Metadata []Meta

// Get returns the value of key and whether it is present.
func (m Metadata) Get(key string) (string, bool) {
	for _, e := range m {
		if e.Key == key {
			return e.Value, true
		}
	}
	return "", false
}

// MarshalXML writes the entries as child elements.
func (m Metadata) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	if err := e.EncodeToken(start); err != nil {
		return err
	}
	for _, kv := range m {
		if !isXMLName(kv.Key) {
			continue
		}
		if err := e.EncodeElement(kv.Value, xml.StartElement{Name: xml.Name{Local: kv.Key}}); err != nil {
			return err
		}
	}
	return e.EncodeToken(start.End())
}

// UnmarshalXML reads child elements as entries; nested markup in a value is
// flattened to its text.
func (m *Metadata) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	for {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			var v struct {
				Text string `xml:",chardata"`
			}
			if err := d.DecodeElement(&v, &t); err != nil {
				return err
			}
			*m = append(*m, Meta{Key: t.Name.Local, Value: v.Text})
		case xml.EndElement:
			return nil
		}
	}
}

// WriteXML writes v as an XML document with the declaration BBB sends.
func WriteXML(w io.Writer, v any) error {
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	if err := enc.Encode(v); err != nil {
		return err
	}
	return enc.Close()
}

// MarshalResponse returns v as an XML document.
func MarshalResponse(v any) ([]byte, error) {
	b, err := xml.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), b...), nil
}

// isXMLName reports whether s can be an element name: metadata keys come from
// request parameters, so anything else is left out rather than breaking the document.
func isXMLName(s string) bool {
	if s == "" || strings.HasPrefix(strings.ToLower(s), "xml") {
		return false
	}
	for i, r := range s {
		letter := r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z'
		if letter || i > 0 && (r == '-' || r == '.' || '0' <= r && r <= '9') {
			continue
		}
		return false
	}
	return true
}
