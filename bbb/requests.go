package bbb

import (
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// The API call names.
const (
	CallCreate                 = "create"
	CallJoin                   = "join"
	CallEnd                    = "end"
	CallIsMeetingRunning       = "isMeetingRunning"
	CallGetMeetingInfo         = "getMeetingInfo"
	CallGetMeetings            = "getMeetings"
	CallInsertDocument         = "insertDocument"
	CallSendChatMessage        = "sendChatMessage" // BBB 3.0
	CallGetRecordings          = "getRecordings"
	CallPublishRecordings      = "publishRecordings"
	CallUpdateRecordings       = "updateRecordings"
	CallDeleteRecordings       = "deleteRecordings"
	CallPutRecordingTextTrack  = "putRecordingTextTrack"
	CallGetRecordingTextTracks = "getRecordingTextTracks"
)

// MetaPrefix starts every metadata parameter: meta_<key>=<value>.
const MetaPrefix = "meta_"

// CreateRequest is a create call. Only MeetingID is required by BBB; Name
// defaults to the meeting ID on the server.
type CreateRequest struct {
	MeetingID       string
	Name            string
	AttendeePW      string
	ModeratorPW     string
	Welcome         string
	VoiceBridge     string
	Record          bool
	Duration        int
	MaxParticipants int
	// Meta become meta_<key> parameters.
	Meta map[string]string
	// Extra carries any other parameter as given.
	Extra url.Values
	// Documents, when present, are sent as the XML body of a POST.
	Documents []Document
}

// Values encodes the request's parameters.
func (r CreateRequest) Values() url.Values {
	v := url.Values{}
	copyValues(v, r.Extra)
	v.Set("meetingID", r.MeetingID)
	setIf(v, "name", r.Name)
	setIf(v, "attendeePW", r.AttendeePW)
	setIf(v, "moderatorPW", r.ModeratorPW)
	setIf(v, "welcome", r.Welcome)
	setIf(v, "voiceBridge", r.VoiceBridge)
	if r.Record {
		v.Set("record", "true")
	}
	if r.Duration > 0 {
		v.Set("duration", strconv.Itoa(r.Duration))
	}
	if r.MaxParticipants > 0 {
		v.Set("maxParticipants", strconv.Itoa(r.MaxParticipants))
	}
	for k, val := range r.Meta {
		v.Set(MetaPrefix+k, val)
	}
	return v
}

// JoinRequest is a join call.
type JoinRequest struct {
	MeetingID string
	FullName  string
	// Role is MODERATOR or VIEWER (BBB 2.4+); Password is the older way.
	Role     string
	Password string
	UserID   string
	// CreateTime, when set, binds the join to one incarnation of the meeting.
	CreateTime int64
	Extra      url.Values
}

// Values encodes the request's parameters.
func (r JoinRequest) Values() url.Values {
	v := url.Values{}
	copyValues(v, r.Extra)
	v.Set("meetingID", r.MeetingID)
	v.Set("fullName", r.FullName)
	setIf(v, "role", r.Role)
	setIf(v, "password", r.Password)
	setIf(v, "userID", r.UserID)
	if r.CreateTime > 0 {
		v.Set("createTime", strconv.FormatInt(r.CreateTime, 10))
	}
	return v
}

// GetRecordingsRequest is a getRecordings call; every field is optional.
type GetRecordingsRequest struct {
	MeetingIDs []string
	RecordIDs  []string
	States     []string
	Meta       map[string]string
	Offset     int
	Limit      int
}

// Values encodes the request's parameters.
func (r GetRecordingsRequest) Values() url.Values {
	v := url.Values{}
	if len(r.MeetingIDs) > 0 {
		v.Set("meetingID", strings.Join(r.MeetingIDs, ","))
	}
	if len(r.RecordIDs) > 0 {
		v.Set("recordID", strings.Join(r.RecordIDs, ","))
	}
	if len(r.States) > 0 {
		v.Set("state", strings.Join(r.States, ","))
	}
	for k, val := range r.Meta {
		v.Set(MetaPrefix+k, val)
	}
	if r.Offset > 0 {
		v.Set("offset", strconv.Itoa(r.Offset))
	}
	if r.Limit > 0 {
		v.Set("limit", strconv.Itoa(r.Limit))
	}
	return v
}

// EncodeQuery encodes parameters as BBB clients do: sorted by key, with
// url.QueryEscape's form encoding (spaces as '+').
func EncodeQuery(v url.Values) string { return v.Encode() }

// MetaFromValues returns the meta_ parameters of a request as metadata, keys
// lower-cased as bbb-web stores them, sorted by key.
func MetaFromValues(v url.Values) Metadata {
	var m Metadata
	for k, vals := range v {
		if len(k) > len(MetaPrefix) && strings.EqualFold(k[:len(MetaPrefix)], MetaPrefix) && len(vals) > 0 {
			m = append(m, Meta{Key: strings.ToLower(k[len(MetaPrefix):]), Value: vals[0]})
		}
	}
	sort.Slice(m, func(i, j int) bool { return m[i].Key < m[j].Key })
	return m
}

func setIf(v url.Values, key, value string) {
	if value != "" {
		v.Set(key, value)
	}
}

func copyValues(dst, src url.Values) {
	for k, vals := range src {
		dst[k] = append([]string(nil), vals...)
	}
}

// Document is a presentation passed to create or insertDocument: by URL, or
// inline as Content (sent base64-encoded).
type Document struct {
	URL          string
	Filename     string
	Name         string
	Downloadable *bool
	Removable    *bool
	Current      *bool
	Content      []byte
}

// Modules is the XML body of a create or insertDocument POST.
type Modules struct {
	XMLName xml.Name `xml:"modules"`
	Modules []Module `xml:"module"`
}

// Module is one module of the body; "presentation" carries documents.
type Module struct {
	Name      string        `xml:"name,attr"`
	Documents []DocumentXML `xml:"document"`
}

// DocumentXML is a <document> element as it appears in the body.
type DocumentXML struct {
	URL          string `xml:"url,attr,omitempty"`
	Filename     string `xml:"filename,attr,omitempty"`
	Name         string `xml:"name,attr,omitempty"`
	Downloadable string `xml:"downloadable,attr,omitempty"`
	Removable    string `xml:"removable,attr,omitempty"`
	Current      string `xml:"current,attr,omitempty"`
	Content      string `xml:",chardata"`
}

// PresentationBody renders documents as the XML body BBB expects.
func PresentationBody(docs []Document) ([]byte, error) {
	mod := Module{Name: "presentation"}
	for _, d := range docs {
		x := DocumentXML{URL: d.URL, Filename: d.Filename, Name: d.Name,
			Downloadable: optBool(d.Downloadable), Removable: optBool(d.Removable), Current: optBool(d.Current)}
		if d.Content != nil {
			x.Content = base64.StdEncoding.EncodeToString(d.Content)
		}
		if x.URL == "" && x.Content == "" {
			return nil, fmt.Errorf("document %q has neither a URL nor content", d.Filename)
		}
		mod.Documents = append(mod.Documents, x)
	}
	return xml.Marshal(Modules{Modules: []Module{mod}})
}

// ParseModules reads a create or insertDocument body and returns the
// documents of its presentation module.
func ParseModules(body []byte) ([]DocumentXML, error) {
	var m Modules
	if err := xml.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("request body is not a <modules> XML document: %w", err)
	}
	var docs []DocumentXML
	for _, mod := range m.Modules {
		if mod.Name == "presentation" {
			for _, d := range mod.Documents {
				d.Content = strings.TrimSpace(d.Content)
				docs = append(docs, d)
			}
		}
	}
	return docs, nil
}

func optBool(b *bool) string {
	if b == nil {
		return ""
	}
	return strconv.FormatBool(*b)
}
