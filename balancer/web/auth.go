package web

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Roles of dashboard users.
const (
	RoleAdmin    = "admin"    // sees everything, acts on nodes, creates rooms
	RoleReadOnly = "readonly" // sees everything, changes nothing
)

// User is one line of the users file.
type User struct {
	Name string
	Hash []byte // bcrypt
	Role string
}

// ReadUsers reads a users file: one "name:bcrypt-hash:role" per line (role
// admin or readonly; blank lines and # comments skipped).
func ReadUsers(path string) (map[string]User, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dashboard users file: %w", err)
	}
	defer f.Close()
	users := map[string]User{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		parts := strings.Split(text, ":")
		if len(parts) != 3 || parts[0] == "" {
			return nil, fmt.Errorf("dashboard users file %s line %d: want name:bcrypt-hash:role", path, line)
		}
		if _, err := bcrypt.Cost([]byte(parts[1])); err != nil {
			return nil, fmt.Errorf("dashboard users file %s line %d: the hash is not bcrypt (make one with htpasswd -nbB): %w", path, line, err)
		}
		if parts[2] != RoleAdmin && parts[2] != RoleReadOnly {
			return nil, fmt.Errorf("dashboard users file %s line %d: role %q: want %s or %s", path, line, parts[2], RoleAdmin, RoleReadOnly)
		}
		users[parts[0]] = User{Name: parts[0], Hash: []byte(parts[1]), Role: parts[2]}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dashboard users file %s: %w", path, err)
	}
	return users, nil
}

// dummyHash is compared against for unknown users.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("no such user"), bcrypt.DefaultCost)
	return h
})

const (
	sessionCookie = "bbb_dashboard"
	sessionTTL    = 12 * time.Hour
)

// session is who is logged in. It travels in the cookie, signed with a key
// derived from the admin token, so every replica accepts it and changing
// the token logs everyone out.
type session struct {
	User    string `json:"u"`
	Role    string `json:"r"`
	Expires int64  `json:"e"` // Unix seconds
}

type authenticator struct {
	adminToken string
	users      map[string]User
	key        []byte
	now        func() time.Time
}

func newAuthenticator(adminToken string, users map[string]User, now func() time.Time) *authenticator {
	m := hmac.New(sha256.New, []byte(adminToken))
	m.Write([]byte("bbb-balancer dashboard session v1"))
	return &authenticator{adminToken: adminToken, users: users, key: m.Sum(nil), now: now}
}

// login checks credentials: an empty name with the admin token, or a
// user of the users file with its password.
func (a *authenticator) login(name, password string) (session, bool) {
	exp := a.now().Add(sessionTTL).Unix()
	if name == "" {
		if a.adminToken != "" && subtle.ConstantTimeCompare([]byte(password), []byte(a.adminToken)) == 1 {
			return session{User: "admin-token", Role: RoleAdmin, Expires: exp}, true
		}
		return session{}, false
	}
	u, ok := a.users[name]
	if !ok {
		// Spend the same time as a wrong password.
		_ = bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return session{}, false
	}
	if bcrypt.CompareHashAndPassword(u.Hash, []byte(password)) != nil {
		return session{}, false
	}
	return session{User: u.Name, Role: u.Role, Expires: exp}, true
}

func (a *authenticator) sign(payload string) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(payload))
	return hex.EncodeToString(m.Sum(nil))
}

func (a *authenticator) encode(s session) string {
	raw, _ := json.Marshal(s)
	payload := base64.RawURLEncoding.EncodeToString(raw)
	return payload + "." + a.sign("session|"+payload)
}

// session returns the request's valid session and its cookie value.
func (a *authenticator) session(r *http.Request) (session, string, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, "", false
	}
	payload, mac, ok := strings.Cut(c.Value, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(a.sign("session|"+payload))) {
		return session{}, "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return session{}, "", false
	}
	var s session
	if json.Unmarshal(raw, &s) != nil || a.now().Unix() >= s.Expires {
		return session{}, "", false
	}
	if s.User != "admin-token" {
		// A user removed from the file, or whose role changed, loses the session.
		u, ok := a.users[s.User]
		if !ok || u.Role != s.Role {
			return session{}, "", false
		}
	}
	return s, c.Value, true
}

// csrf is the CSRF token of a session: bound to the cookie, so it cannot be
// guessed by another site, and changes with every login.
func (a *authenticator) csrf(cookie string) string {
	return a.sign("csrf|" + cookie)[:40]
}

func (a *authenticator) checkCSRF(cookie, token string) bool {
	return token != "" && hmac.Equal([]byte(token), []byte(a.csrf(cookie)))
}

func (a *authenticator) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: value, Path: "/dashboard/", MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
}

// limiter allows n requests per window per client address (fixed windows:
// simple and enough to stop guessing names and passwords).
type limiter struct {
	n      int
	window time.Duration
	now    func() time.Time
	mu     sync.Mutex
	start  time.Time
	counts map[string]int
}

func newLimiter(n int, window time.Duration, now func() time.Time) *limiter {
	return &limiter{n: n, window: window, now: now, counts: map[string]int{}}
}

func (l *limiter) allow(addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := l.now(); now.Sub(l.start) >= l.window {
		l.start, l.counts = now, map[string]int{}
	}
	l.counts[addr]++
	return l.counts[addr] <= l.n
}

// clientAddr is the request's remote IP without the port.
func clientAddr(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	return strings.Trim(host, "[]")
}
