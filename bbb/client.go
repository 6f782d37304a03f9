package bbb

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// APIPath is where the API lives below a server URL.
const APIPath = "/bigbluebutton/api/"

// APIURL turns a server URL (https://bbb1.example.com) or an API URL
// (https://bbb1.example.com/bigbluebutton/api) into the API base URL, which
// always ends in "/bigbluebutton/api/".
func APIURL(serverURL string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(serverURL))
	if err != nil {
		return "", fmt.Errorf("BBB server URL %q: %w", serverURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("BBB server URL %q: want http(s)://host[:port], e.g. https://bbb1.example.com", serverURL)
	}
	u.RawQuery, u.Fragment = "", ""
	// One server, one URL: the scheme's default port is left out.
	if u.Scheme == "https" && u.Port() == "443" || u.Scheme == "http" && u.Port() == "80" {
		u.Host = u.Hostname()
		if strings.Contains(u.Host, ":") {
			u.Host = "[" + u.Host + "]"
		}
	}
	p := strings.TrimRight(u.Path, "/")
	p = strings.TrimSuffix(p, "/api")
	p = strings.TrimSuffix(p, "/bigbluebutton")
	u.Path = p + APIPath
	u.RawPath = ""
	return u.String(), nil
}

// DefaultMaxResponseBytes bounds a response body read by the client.
const DefaultMaxResponseBytes = 32 << 20

// Client calls one BBB server's API. It is safe for concurrent use.
type Client struct {
	apiURL    string
	secret    string
	algorithm Algorithm
	http      *http.Client
	maxBody   int64
}

// ClientOption configures a Client.
type ClientOption func(*Client)

// WithAlgorithm chooses the checksum algorithm (default sha256; sha1 for old servers).
func WithAlgorithm(a Algorithm) ClientOption { return func(c *Client) { c.algorithm = a } }

// WithHTTPClient sets the HTTP client. It must not follow redirects for
// join to be usable through Join; the client never asks it to.
func WithHTTPClient(h *http.Client) ClientOption { return func(c *Client) { c.http = h } }

// WithMaxResponseBytes bounds the body size read from the server. A test
// seam: the commands keep the default.
func WithMaxResponseBytes(n int64) ClientOption { return func(c *Client) { c.maxBody = n } }

// NewClient returns a client for the server at serverURL (server or API URL).
func NewClient(serverURL, secret string, opts ...ClientOption) (*Client, error) {
	api, err := APIURL(serverURL)
	if err != nil {
		return nil, err
	}
	if secret == "" {
		return nil, errors.New("BBB secret is empty: give the securitySalt of bbb-web.properties (bbb-conf --secret prints it)")
	}
	c := &Client{apiURL: api, secret: secret, algorithm: SHA256, maxBody: DefaultMaxResponseBytes,
		http: &http.Client{Timeout: 30 * time.Second}}
	for _, o := range opts {
		o(c)
	}
	if c.algorithm.hexLen() == 0 {
		return nil, fmt.Errorf("unknown checksum algorithm %q", c.algorithm)
	}
	return c, nil
}

// APIURL returns the API base URL the client talks to.
func (c *Client) APIURL() string { return c.apiURL }

// URL returns the signed URL of a call.
func (c *Client) URL(call string, params url.Values) string {
	return c.apiURL + call + "?" + SignQuery(c.algorithm, call, EncodeQuery(params), c.secret)
}

// Get performs a GET call and decodes a SUCCESS response into out (may be nil).
// A FAILED response is returned as *APIError.
func (c *Client) Get(ctx context.Context, call string, params url.Values, out any) error {
	return c.do(ctx, http.MethodGet, call, params, "", nil, out)
}

// Post performs a POST call with a body (parameters stay in the query string).
func (c *Client) Post(ctx context.Context, call string, params url.Values, contentType string, body []byte, out any) error {
	return c.do(ctx, http.MethodPost, call, params, contentType, body, out)
}

func (c *Client) do(ctx context.Context, method, call string, params url.Values, contentType string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL(call, params), rd)
	if err != nil {
		return fmt.Errorf("bbb %s: %w", call, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("bbb %s: %w", call, redactURL(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return fmt.Errorf("bbb %s: reading response: %w", call, err)
	}
	if int64(len(data)) > c.maxBody {
		return fmt.Errorf("bbb %s: response larger than %d bytes", call, c.maxBody)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bbb %s: %w from %s", call, &StatusError{Code: resp.StatusCode, Status: resp.Status}, c.apiURL)
	}
	return DecodeResponse(call, data, out)
}

// StatusError is an HTTP answer other than 200 OK from a BBB server: a
// proxy in front of it, or a server that is no BBB.
type StatusError struct {
	Code   int
	Status string // "502 Bad Gateway"
}

func (e *StatusError) Error() string { return "HTTP " + e.Status }

// DecodeResponse checks a response's envelope and decodes a SUCCESS response
// into out (may be nil). A FAILED one becomes *APIError. A SUCCESS answer is
// parsed once, straight into out: a node's getMeetings can be large.
func DecodeResponse(call string, data []byte, out any) error {
	code, ok := returnCode(data)
	if !ok || code == ReturnFailed || out == nil {
		var env Envelope
		if err := xml.Unmarshal(data, &env); err != nil {
			return fmt.Errorf("bbb %s: not a BBB API response (%w): %q", call, err, snippet(data))
		}
		code = env.ReturnCode
		if code == ReturnFailed {
			return env.Err(call)
		}
	}
	if code != ReturnSuccess {
		return fmt.Errorf("bbb %s: response has returncode %q: %q", call, code, snippet(data))
	}
	if out == nil {
		return nil
	}
	if err := xml.Unmarshal(data, out); err != nil {
		return fmt.Errorf("bbb %s: decoding response: %w", call, err)
	}
	return nil
}

// returnCode finds the <returncode> element's text without parsing the
// document; in XML that text cannot hold a raw '<'.
func returnCode(data []byte) (string, bool) {
	const open, closing = "<returncode>", "</returncode>"
	i := bytes.Index(data, []byte(open))
	if i < 0 {
		return "", false
	}
	rest := data[i+len(open):]
	j := bytes.Index(rest, []byte(closing))
	if j < 0 {
		return "", false
	}
	return string(bytes.TrimSpace(rest[:j])), true
}

func snippet(b []byte) string {
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}

// redactURL drops the query string (which carries the checksum) from a
// transport error's URL.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery = ""
			return &url.Error{Op: ue.Op, URL: u.String(), Err: ue.Err}
		}
	}
	return err
}

// Root calls the API root, which needs no checksum; it is the health check.
func (c *Client) Root(ctx context.Context) (*RootResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.apiURL, "/"), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bbb api root: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("bbb api root: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bbb api root: HTTP %s from %s", resp.Status, c.apiURL)
	}
	var out RootResponse
	if err := DecodeResponse("root", data, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Create creates a meeting (idempotent on the server for identical
// parameters: MessageKey is then duplicateWarning). With Documents it POSTs them.
func (c *Client) Create(ctx context.Context, r CreateRequest) (*CreateResponse, error) {
	var out CreateResponse
	var err error
	if len(r.Documents) > 0 {
		body, berr := PresentationBody(r.Documents)
		if berr != nil {
			return nil, fmt.Errorf("bbb create: %w", berr)
		}
		err = c.Post(ctx, CallCreate, r.Values(), "application/xml", body, &out)
	} else {
		err = c.Get(ctx, CallCreate, r.Values(), &out)
	}
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// JoinURL returns the signed join URL to send a user's browser to. Join is a
// redirect for the browser, not a call for the client.
func (c *Client) JoinURL(r JoinRequest) string {
	return c.URL(CallJoin, r.Values())
}

// Join performs a join with redirect=false and returns the session details.
func (c *Client) Join(ctx context.Context, r JoinRequest) (*JoinResponse, error) {
	v := r.Values()
	v.Set("redirect", "false")
	var out JoinResponse
	if err := c.Get(ctx, CallJoin, v, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// End ends a meeting. password is only needed by BBB before 2.6.
func (c *Client) End(ctx context.Context, meetingID, password string) error {
	v := url.Values{"meetingID": {meetingID}}
	setIf(v, "password", password)
	return c.Get(ctx, CallEnd, v, nil)
}

// IsMeetingRunning reports whether the meeting is running.
func (c *Client) IsMeetingRunning(ctx context.Context, meetingID string) (bool, error) {
	var out IsMeetingRunningResponse
	if err := c.Get(ctx, CallIsMeetingRunning, url.Values{"meetingID": {meetingID}}, &out); err != nil {
		return false, err
	}
	return out.Running, nil
}

// GetMeetingInfo describes one meeting.
func (c *Client) GetMeetingInfo(ctx context.Context, meetingID string) (*Meeting, error) {
	var out GetMeetingInfoResponse
	if err := c.Get(ctx, CallGetMeetingInfo, url.Values{"meetingID": {meetingID}}, &out); err != nil {
		return nil, err
	}
	return &out.Meeting, nil
}

// GetMeetings lists the server's meetings (none is not an error).
func (c *Client) GetMeetings(ctx context.Context) ([]Meeting, error) {
	var out GetMeetingsResponse
	if err := c.Get(ctx, CallGetMeetings, url.Values{}, &out); err != nil {
		return nil, err
	}
	return out.Meetings, nil
}

// InsertDocument adds documents to a running meeting's presentation.
func (c *Client) InsertDocument(ctx context.Context, meetingID string, docs []Document) error {
	body, err := PresentationBody(docs)
	if err != nil {
		return fmt.Errorf("bbb insertDocument: %w", err)
	}
	return c.Post(ctx, CallInsertDocument, url.Values{"meetingID": {meetingID}}, "application/xml", body, nil)
}

// GetRecordings lists recordings (none is not an error).
func (c *Client) GetRecordings(ctx context.Context, r GetRecordingsRequest) ([]Recording, error) {
	var out GetRecordingsResponse
	if err := c.Get(ctx, CallGetRecordings, r.Values(), &out); err != nil {
		return nil, err
	}
	return out.Recordings, nil
}

// PublishRecordings publishes or unpublishes recordings.
func (c *Client) PublishRecordings(ctx context.Context, recordIDs []string, publish bool) error {
	v := url.Values{"recordID": {strings.Join(recordIDs, ",")}, "publish": {fmt.Sprint(publish)}}
	var out PublishRecordingsResponse
	return c.Get(ctx, CallPublishRecordings, v, &out)
}

// UpdateRecordings sets metadata on recordings (an empty value removes the key).
func (c *Client) UpdateRecordings(ctx context.Context, recordIDs []string, meta map[string]string) error {
	v := url.Values{"recordID": {strings.Join(recordIDs, ",")}}
	for k, val := range meta {
		v.Set(MetaPrefix+k, val)
	}
	var out UpdateRecordingsResponse
	return c.Get(ctx, CallUpdateRecordings, v, &out)
}

// DeleteRecordings deletes recordings.
func (c *Client) DeleteRecordings(ctx context.Context, recordIDs []string) error {
	v := url.Values{"recordID": {strings.Join(recordIDs, ",")}}
	var out DeleteRecordingsResponse
	return c.Get(ctx, CallDeleteRecordings, v, &out)
}
