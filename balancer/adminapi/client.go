package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ErrNoToken is NewClient's answer to an empty admin token.
var ErrNoToken = errors.New("no admin token")

// UnreachableError says the balancer did not answer at all (refused,
// unresolvable, timed out), as opposed to answering with an error.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the balancer at %s (is bbb-balancer serve running there?): %v", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Client calls a balancer's admin API.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client for the balancer at baseURL (e.g. http://127.0.0.1:8090).
func NewClient(baseURL, token string) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("balancer URL %q: want http(s)://host:port", baseURL)
	}
	if token == "" {
		return nil, ErrNoToken
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: &http.Client{Timeout: 60 * time.Second}}, nil
}

// Servers lists every server.
func (c *Client) Servers(ctx context.Context) ([]Server, error) {
	var out []Server
	return out, c.do(ctx, http.MethodGet, PathServers, nil, &out)
}

// Server describes one server by ID or name.
func (c *Client) Server(ctx context.Context, id string) (Server, error) {
	var out Server
	return out, c.do(ctx, http.MethodGet, PathServer+url.PathEscape(id), nil, &out)
}

// AddServer adds a server without an agent.
func (c *Client) AddServer(ctx context.Context, req AddServerRequest) (Server, error) {
	var out Server
	return out, c.do(ctx, http.MethodPost, PathServers, req, &out)
}

// UpdateServer changes a server's tags or load multiplier.
func (c *Client) UpdateServer(ctx context.Context, id string, req UpdateServerRequest) (Server, error) {
	var out Server
	return out, c.do(ctx, http.MethodPost, PathServer+url.PathEscape(id), req, &out)
}

// SetState enables, cordons or disables a server.
func (c *Client) SetState(ctx context.Context, id string, req SetStateRequest) (Server, error) {
	var out Server
	return out, c.do(ctx, http.MethodPost, PathServer+url.PathEscape(id)+"/state", req, &out)
}

// Panic disables a server and ends every meeting on it.
func (c *Client) Panic(ctx context.Context, id string) (PanicResponse, error) {
	var out PanicResponse
	return out, c.do(ctx, http.MethodPost, PathServer+url.PathEscape(id)+"/panic", struct{}{}, &out)
}

// RemoveServer removes a server.
func (c *Client) RemoveServer(ctx context.Context, id string) (Server, error) {
	var out Server
	return out, c.do(ctx, http.MethodDelete, PathServer+url.PathEscape(id), nil, &out)
}

// AllowTakeover lets the next agent that registers the server's name with
// --takeover take it over.
func (c *Client) AllowTakeover(ctx context.Context, id string) (Server, error) {
	var out Server
	return out, c.do(ctx, http.MethodPost, PathServer+url.PathEscape(id)+"/allow-takeover", struct{}{}, &out)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err // the URL is in the message already
		}
		return &UnreachableError{URL: c.base, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("balancer at %s: reading the answer: %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("balancer: %s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("balancer at %s: HTTP %s", c.base, resp.Status)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("balancer at %s: answer is not the expected JSON: %w", c.base, err)
	}
	return nil
}
