package web

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"
)

//go:embed assets
var assets embed.FS

// Options configure the pages.
type Options struct {
	Fleet Fleet
	Rooms Rooms
	// AdminToken logs in as admin (with an empty user name).
	AdminToken string
	// Users are the users file's users, if any.
	Users map[string]User
	// Dashboard false serves the room links only.
	Dashboard bool
	// MaxMeetingsShown bounds the meetings list (the largest first); default 200.
	MaxMeetingsShown int
	// MaxNodesShown bounds the BBB servers' table; default 1,000. A
	// bigger fleet shows the servers that need attention first (offline,
	// unhealthy, cordoned, disabled), then the most loaded: 10,000 rows
	// are 6 MB of HTML every few seconds, for a browser to redraw.
	MaxNodesShown int
	Clock         func() time.Time
	Logger        *slog.Logger
	// AfterRender, if set, is called after each render of the live part
	// (at most one per role per second, however many look): it allocates
	// several MB for a moment at 10,000 nodes.
	AfterRender func()
}

// Handler serves /dashboard/ and /rooms/.
type Handler struct {
	opt    Options
	auth   *authenticator
	tmpl   *template.Template
	static http.Handler
	// logins and names rate-limit password and display-name submissions per address.
	logins, names *limiter
	mux           *http.ServeMux

	// The live part is the same for every viewer of a role (it carries
	// no CSRF token): rendered at most once per liveTTL, whoever polls.
	liveTTL time.Duration
	liveMu  sync.Mutex
	liveAt  [2]time.Time
	liveOut [2]cachedLive
}

type cachedLive struct {
	html template.HTML
	gz   []byte // html gzipped: a 1,000-node fleet is about 1 MB, 60 kB gzipped
}

// New builds the handler.
func New(opt Options) *Handler {
	if opt.Clock == nil {
		opt.Clock = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.MaxMeetingsShown <= 0 {
		opt.MaxMeetingsShown = 200
	}
	if opt.MaxNodesShown <= 0 {
		opt.MaxNodesShown = 1000
	}
	h := &Handler{opt: opt, auth: newAuthenticator(opt.AdminToken, opt.Users, opt.Clock), liveTTL: time.Second,
		logins: newLimiter(10, time.Minute, opt.Clock), names: newLimiter(30, time.Minute, opt.Clock)}
	h.tmpl = template.Must(template.New("").Funcs(template.FuncMap{
		"age":   fmtAge,
		"since": func(t time.Time) string { return fmtAge(opt.Clock().Sub(t)) },
		"clock": func(t time.Time) string { return t.UTC().Format("15:04:05") },
		"spark": sparkline,
		"f1":    func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
		"f0":    func(f float64) string { return strconv.FormatFloat(f, 'f', 0, 64) },
		"join":  strings.Join,
	}).ParseFS(assets, "assets/*.html"))
	sub, _ := fs.Sub(assets, "assets")
	h.static = http.StripPrefix("/dashboard/static/", http.FileServerFS(sub))
	mux := http.NewServeMux()
	mux.Handle("GET /dashboard/static/", h.static)
	mux.HandleFunc("GET /rooms/{token}", h.roomPage)
	mux.HandleFunc("POST /rooms/{token}", h.roomPage)
	if opt.Dashboard {
		mux.HandleFunc("GET /dashboard/login", h.loginPage)
		mux.HandleFunc("POST /dashboard/login", h.login)
		mux.HandleFunc("POST /dashboard/logout", h.withSession(h.logout))
		mux.HandleFunc("GET /dashboard/{$}", h.withSession(h.page))
		mux.HandleFunc("GET /dashboard/live", h.withSession(h.live))
		mux.HandleFunc("POST /dashboard/nodes/{id}/state", h.withSession(h.adminOnly(h.setState)))
		mux.HandleFunc("POST /dashboard/rooms", h.withSession(h.adminOnly(h.createRoom)))
	}
	h.mux = mux
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self' http: https:")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer") // room links carry tokens
	h.mux.ServeHTTP(w, r)
}

type sessionHandler func(w http.ResponseWriter, r *http.Request, s session, cookie string)

// withSession sends a request without a valid session to the login page,
// and refuses a state-changing one without the session's CSRF token.
func (h *Handler) withSession(next sessionHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, cookie, ok := h.auth.session(r)
		if !ok {
			if r.Method != http.MethodGet {
				http.Error(w, "not logged in: log in at /dashboard/login", http.StatusUnauthorized)
				return
			}
			if r.URL.Path == "/dashboard/live" {
				w.Header().Set("X-Login", "/dashboard/login")
				http.Error(w, "not logged in", http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/dashboard/login", http.StatusSeeOther)
			return
		}
		if r.Method != http.MethodGet && !h.auth.checkCSRF(cookie, r.PostFormValue("csrf")) {
			h.opt.Logger.Warn("dashboard: refused a request without a valid CSRF token", "user", s.User, "path", r.URL.Path, "addr", clientAddr(r))
			http.Error(w, "missing or wrong CSRF token: reload the dashboard and try again", http.StatusForbidden)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		next(w, r, s, cookie)
	}
}

func (h *Handler) adminOnly(next sessionHandler) sessionHandler {
	return func(w http.ResponseWriter, r *http.Request, s session, cookie string) {
		if s.Role != RoleAdmin {
			http.Error(w, "your dashboard role is read-only", http.StatusForbidden)
			return
		}
		next(w, r, s, cookie)
	}
}

func (h *Handler) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := h.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		h.opt.Logger.Error("dashboard: rendering a page", "page", name, "err", err)
		http.Error(w, "the page could not be rendered; see the balancer's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := h.auth.session(r); ok {
		http.Redirect(w, r, "/dashboard/", http.StatusSeeOther)
		return
	}
	h.render(w, http.StatusOK, "login.html", map[string]any{"Users": len(h.opt.Users) > 0})
}

func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	addr := clientAddr(r)
	if !h.logins.allow(addr) {
		http.Error(w, "too many login attempts from your address: wait a minute", http.StatusTooManyRequests)
		return
	}
	name := strings.TrimSpace(r.PostFormValue("user"))
	s, ok := h.auth.login(name, r.PostFormValue("password"))
	if !ok {
		h.opt.Logger.Warn("dashboard: failed login", "user", name, "addr", addr)
		h.render(w, http.StatusUnauthorized, "login.html", map[string]any{"Users": len(h.opt.Users) > 0, "Error": "Wrong user name, password or token."})
		return
	}
	h.auth.setCookie(w, r, h.auth.encode(s), int(sessionTTL/time.Second))
	h.opt.Logger.Info("dashboard: login", "user", s.User, "role", s.Role, "addr", addr)
	http.Redirect(w, r, "/dashboard/", http.StatusSeeOther)
}

func (h *Handler) logout(w http.ResponseWriter, r *http.Request, s session, _ string) {
	h.auth.setCookie(w, r, "", -1)
	h.opt.Logger.Info("dashboard: logout", "user", s.User)
	http.Redirect(w, r, "/dashboard/login", http.StatusSeeOther)
}

// pageData is what the dashboard templates see.
type pageData struct {
	Snapshot
	User, CSRF, Message string
	CanAct              bool
	Online, Offline     int
	MoreMeetings        int
	BBB, TURN           []Node
	// BBBTotal counts the BBB servers; BBB may be some of them only, and
	// MoreNodes says how many are not shown.
	BBBTotal, MoreNodes int
	Links               *RoomLinks
	// Live is the rendered live part, in the full page.
	Live template.HTML
}

// liveHTML renders the live part for a role, or reuses a render younger than liveTTL.
func (h *Handler) liveHTML(canAct bool) (template.HTML, error) {
	c, err := h.liveCached(canAct)
	return c.html, err
}

func (h *Handler) liveCached(canAct bool) (cachedLive, error) {
	i := 0
	if canAct {
		i = 1
	}
	h.liveMu.Lock()
	defer h.liveMu.Unlock()
	if time.Since(h.liveAt[i]) < h.liveTTL {
		return h.liveOut[i], nil
	}
	if h.opt.AfterRender != nil {
		defer h.opt.AfterRender()
	}
	// Sized as the last render was: growing to 0.6 MB (at 10,000 nodes)
	// would leave as much again behind.
	prev := len(h.liveOut[i].html)
	buf := bytes.NewBuffer(make([]byte, 0, prev+prev/8))
	if err := h.tmpl.ExecuteTemplate(buf, "live", h.data(canAct)); err != nil {
		return cachedLive{}, err
	}
	gz := bytes.NewBuffer(make([]byte, 0, len(h.liveOut[i].gz)+len(h.liveOut[i].gz)/8))
	zw, _ := gzip.NewWriterLevel(gz, gzip.BestSpeed)
	_, _ = zw.Write(buf.Bytes())
	_ = zw.Close()
	// The HTML is buf's bytes, not a copy: buf is not written again.
	html := unsafe.String(unsafe.SliceData(buf.Bytes()), buf.Len())
	h.liveAt[i], h.liveOut[i] = time.Now(), cachedLive{html: template.HTML(html), gz: gz.Bytes()}
	return h.liveOut[i], nil
}

// forgetLive drops the rendered live part, after a change the user must see.
func (h *Handler) forgetLive() {
	h.liveMu.Lock()
	h.liveAt = [2]time.Time{}
	h.liveMu.Unlock()
}

func (h *Handler) data(canAct bool) pageData {
	snap := h.opt.Fleet.Snapshot(h.opt.MaxNodesShown)
	d := pageData{Snapshot: snap, CanAct: canAct, Online: snap.Counts.Online, Offline: snap.Counts.Offline, BBBTotal: snap.Counts.BBB}
	for _, n := range snap.Nodes {
		if n.Role == "turn" {
			d.TURN = append(d.TURN, n)
		} else {
			d.BBB = append(d.BBB, n)
		}
	}
	d.BBB = mostNeedingAttention(d.BBB, h.opt.MaxNodesShown)
	d.MoreNodes = max(d.BBBTotal-len(d.BBB), 0)
	if len(d.Meetings) > h.opt.MaxMeetingsShown {
		d.Meetings = d.Meetings[:h.opt.MaxMeetingsShown]
	}
	d.MoreMeetings = max(snap.MeetingsTotal-len(d.Meetings), 0)
	return d
}

// mostNeedingAttention keeps at most n of the nodes, in their order (by
// name): the first n in AttentionOrder.
func mostNeedingAttention(nodes []Node, n int) []Node {
	if len(nodes) <= n {
		return nodes
	}
	rank := func(x *Node) int { return AttentionRank(x.Liveness == "online", x.Reason == "", x.State) }
	order := make([]int, len(nodes))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		x, y := &nodes[a], &nodes[b]
		return cmp.Or(AttentionOrder(rank(x), x.Load, x.Name, rank(y), y.Load, y.Name), cmp.Compare(a, b))
	})
	order = order[:n]
	slices.Sort(order)
	kept := make([]Node, n)
	for i, j := range order {
		kept[i] = nodes[j]
	}
	return kept
}

func (h *Handler) page(w http.ResponseWriter, r *http.Request, s session, cookie string) {
	h.renderPage(w, s, cookie, r.URL.Query().Get("msg"), nil)
}

func (h *Handler) renderPage(w http.ResponseWriter, s session, cookie, msg string, links *RoomLinks) {
	live, err := h.liveHTML(s.Role == RoleAdmin)
	if err != nil {
		h.opt.Logger.Error("dashboard: rendering the fleet", "err", err)
		http.Error(w, "the page could not be rendered; see the balancer's log", http.StatusInternalServerError)
		return
	}
	d := pageData{User: s.User, CSRF: h.auth.csrf(cookie), CanAct: s.Role == RoleAdmin, Message: msg, Links: links, Live: live}
	h.render(w, http.StatusOK, "dashboard.html", d)
}

// live is the part of the page that changes, rendered on the server. The
// page fetches it every few seconds (short polling) rather than holding a
// server-sent event stream: it needs nothing from proxies in front of the
// balancer, survives replica restarts and load-balanced replicas without
// reconnect logic, costs one snapshot per viewer per poll, and a viewer
// that has gone away costs nothing.
func (h *Handler) live(w http.ResponseWriter, r *http.Request, s session, _ string) {
	live, err := h.liveCached(s.Role == RoleAdmin)
	if err != nil {
		h.opt.Logger.Error("dashboard: rendering the fleet", "err", err)
		http.Error(w, "the page could not be rendered; see the balancer's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Add("Vary", "Accept-Encoding")
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(live.gz)
		return
	}
	_, _ = w.Write([]byte(live.html))
}

var states = map[string]string{"enabled": "enabled", "cordoned": "cordoned", "disabled": "disabled"}

func (h *Handler) setState(w http.ResponseWriter, r *http.Request, s session, _ string) {
	node, state := r.PathValue("id"), states[r.PostFormValue("state")]
	if state == "" {
		http.Error(w, "state must be enabled, cordoned or disabled", http.StatusBadRequest)
		return
	}
	err := h.opt.Fleet.SetState(r.Context(), s.User, node, state)
	h.forgetLive()
	msg := fmt.Sprintf("%s is now %s.", node, state)
	if err != nil {
		h.opt.Logger.Error("dashboard: setting a node's state", "user", s.User, "node", node, "state", state, "err", err)
		msg = "Could not set the state: " + err.Error()
	}
	http.Redirect(w, r, "/dashboard/?msg="+url.QueryEscape(msg), http.StatusSeeOther)
}

func (h *Handler) createRoom(w http.ResponseWriter, r *http.Request, s session, cookie string) {
	req := RoomRequest{Name: strings.TrimSpace(r.PostFormValue("name")), Record: r.PostFormValue("record") != "",
		WaitForModerator: r.PostFormValue("wait") != ""}
	if v := r.PostFormValue("max"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			http.Error(w, "maximum participants must be a whole number, 0 for no limit", http.StatusBadRequest)
			return
		}
		req.MaxParticipants = n
	}
	if req.Name == "" {
		http.Error(w, "a room needs a name", http.StatusBadRequest)
		return
	}
	links, err := h.opt.Fleet.CreateRoom(r.Context(), s.User, req, baseURL(r))
	if err != nil {
		h.opt.Logger.Error("dashboard: creating a room", "user", s.User, "err", err)
		h.renderPage(w, s, cookie, "Could not create the room: "+err.Error(), nil)
		return
	}
	h.renderPage(w, s, cookie, fmt.Sprintf("Room %q created. Its links are shown once: copy them now.", links.Name), &links)
}

// baseURL is the balancer as the browser reaches it.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// BaseURL is the balancer as a client of r reaches it (for links).
func BaseURL(r *http.Request) string { return baseURL(r) }

func (h *Handler) roomPage(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	w.Header().Set("Cache-Control", "no-store")
	roomName, moderator, err := h.opt.Rooms.Room(r.Context(), token)
	if errors.Is(err, ErrNoRoom) {
		h.render(w, http.StatusNotFound, "room.html", map[string]any{"Gone": true})
		return
	}
	if err != nil {
		h.opt.Logger.Error("rooms: looking up a link", "err", err)
		http.Error(w, "the balancer could not look up this link; try again in a moment", http.StatusServiceUnavailable)
		return
	}
	data := map[string]any{"Room": roomName, "Moderator": moderator, "Token": token}
	name := strings.TrimSpace(r.FormValue("name"))
	if name == "" {
		h.render(w, http.StatusOK, "room.html", data)
		return
	}
	data["Name"] = name
	if len(name) > 64 {
		data["Error"] = "Please use a shorter name (64 characters at most)."
		h.render(w, http.StatusBadRequest, "room.html", data)
		return
	}
	if !h.names.allow(clientAddr(r)) {
		data["Error"] = "Too many attempts from your address; wait a minute and try again."
		h.render(w, http.StatusTooManyRequests, "room.html", data)
		return
	}
	joinURL, err := h.opt.Rooms.Open(r.Context(), token, name)
	switch {
	case errors.Is(err, ErrWaitForModerator):
		data["Waiting"] = true
		data["Refresh"] = "/rooms/" + url.PathEscape(token) + "?name=" + url.QueryEscape(name)
		h.render(w, http.StatusOK, "room.html", data)
	case err != nil:
		h.opt.Logger.Error("rooms: opening a room", "room", roomName, "err", err)
		data["Error"] = "The meeting could not be started: " + err.Error()
		h.render(w, http.StatusServiceUnavailable, "room.html", data)
	default:
		http.Redirect(w, r, joinURL, http.StatusSeeOther)
	}
}

func fmtAge(d time.Duration) string {
	switch {
	case d < 0:
		return "never"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	default:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
}

// sparkline draws a load history as an inline SVG polyline. Only numbers
// go into it.
func sparkline(hist []float64) template.HTML {
	const w, hgt = 120.0, 24.0
	if len(hist) == 1 {
		hist = []float64{hist[0], hist[0]}
	}
	if len(hist) < 2 {
		return `<svg class="spark" width="120" height="24" aria-hidden="true"></svg>`
	}
	top := 1.0
	for _, v := range hist {
		top = max(top, v*1.25)
	}
	var b strings.Builder
	b.Grow(24 + len(hist)*10)
	b.WriteString(`<svg class="spark" width="120" height="24" viewBox="0 0 120 24" aria-hidden="true"><polyline fill="none" stroke="currentColor" points="`)
	step := w / float64(len(hist)-1)
	for i, v := range hist {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(float64(i)*step, 'f', 0, 64))
		b.WriteByte(',')
		b.WriteString(strconv.FormatFloat(hgt-1-(hgt-2)*v/top, 'f', 1, 64))
	}
	b.WriteString(`"/></svg>`)
	return template.HTML(b.String())
}
