package balancer

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/bbb-agent/bbb-agent/balancer/adminapi"
	"github.com/bbb-agent/bbb-agent/balancer/store"
	"github.com/bbb-agent/bbb-agent/balancer/web"
	"github.com/bbb-agent/bbb-agent/bbb"
)

// Paths of the rooms admin API.
const (
	PathRooms = "/admin/v1/rooms"
	// PathRoom is followed by the room ID, then optionally "/rotate".
	PathRoom = "/admin/v1/rooms/"
)

// CreateRoomRequest is the body of POST /admin/v1/rooms.
type CreateRoomRequest struct {
	Name             string `json:"name"`
	Record           bool   `json:"record"`
	MaxParticipants  int    `json:"max_participants"`
	WaitForModerator bool   `json:"wait_for_moderator"`
}

// Room is a room as GET /admin/v1/rooms lists it: its links are not
// stored, only their hashes, so they are shown once (create, rotate).
type Room struct {
	ID               string    `json:"id"`
	Name             string    `json:"name"`
	MeetingID        string    `json:"meeting_id"`
	Record           bool      `json:"record"`
	MaxParticipants  int       `json:"max_participants"`
	WaitForModerator bool      `json:"wait_for_moderator"`
	CreatedAt        time.Time `json:"created_at"`
}

// roomToken is a link's secret: 256 random bits.
func roomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func roomLinksFor(r store.Room, base, modToken, viewToken string) web.RoomLinks {
	base = strings.TrimRight(base, "/")
	return web.RoomLinks{ID: r.ID, Name: r.Name, Moderator: base + "/rooms/" + modToken, Viewer: base + "/rooms/" + viewToken}
}

// createRoom stores a room and returns its two links.
func (s *Server) createRoom(ctx context.Context, req web.RoomRequest, base string) (web.RoomLinks, error) {
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 200 {
		return web.RoomLinks{}, errors.New("a room needs a name of 1 to 200 characters")
	}
	if req.MaxParticipants < 0 {
		return web.RoomLinks{}, errors.New("maximum participants must not be negative (0: no limit)")
	}
	mod, view := roomToken(), roomToken()
	r, err := s.store.CreateRoom(ctx, store.Room{Name: req.Name, ModeratorHash: store.TokenHash(mod), ViewerHash: store.TokenHash(view),
		Record: req.Record, MaxParticipants: req.MaxParticipants, WaitForModerator: req.WaitForModerator, CreatedAt: s.cfg.Clock()})
	if err != nil {
		return web.RoomLinks{}, fmt.Errorf("the balancer's database did not store the room: %w", err)
	}
	return roomLinksFor(r, base, mod, view), nil
}

// roomsAdminHandler serves /admin/v1/rooms.
func (s *Server) roomsAdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathRooms, s.adminRooms)
	mux.HandleFunc("POST "+PathRooms, s.adminCreateRoom)
	mux.HandleFunc("POST "+PathRoom+"{id}/rotate", s.adminRotateRoom)
	mux.HandleFunc("DELETE "+PathRoom+"{id}", s.adminDeleteRoom)
	return s.requireToken(s.cfg.AdminToken, mux, func(w http.ResponseWriter) {
		writeJSON(w, http.StatusUnauthorized, adminapi.Error{Error: "missing or wrong admin token"})
	})
}

func (s *Server) adminRooms(w http.ResponseWriter, r *http.Request) {
	rooms, err := s.store.Rooms(r.Context())
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, adminapi.Error{Error: "the balancer's database did not answer: " + err.Error()})
		return
	}
	out := make([]Room, 0, len(rooms))
	for _, rm := range rooms {
		out = append(out, Room{ID: rm.ID, Name: rm.Name, MeetingID: rm.MeetingID, Record: rm.Record, MaxParticipants: rm.MaxParticipants,
			WaitForModerator: rm.WaitForModerator, CreatedAt: rm.CreatedAt})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) adminCreateRoom(w http.ResponseWriter, r *http.Request) {
	var req CreateRoomRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, adminapi.Error{Error: "request body is not the expected JSON: " + err.Error()})
		return
	}
	links, err := s.createRoom(r.Context(), web.RoomRequest{Name: req.Name, Record: req.Record, MaxParticipants: req.MaxParticipants,
		WaitForModerator: req.WaitForModerator}, web.BaseURL(r))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, adminapi.Error{Error: err.Error()})
		return
	}
	s.log.Info("room created through the admin API", "room", links.Name, "id", links.ID)
	writeJSON(w, http.StatusOK, links)
}

func (s *Server) adminRotateRoom(w http.ResponseWriter, r *http.Request) {
	mod, view := roomToken(), roomToken()
	rm, err := s.store.SetRoomHashes(r.Context(), r.PathValue("id"), store.TokenHash(mod), store.TokenHash(view))
	if errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, adminapi.Error{Error: fmt.Sprintf("no room with id %q (bbb-balancer rooms list shows them)", r.PathValue("id"))})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, adminapi.Error{Error: "the balancer's database did not answer: " + err.Error()})
		return
	}
	s.log.Info("room links rotated through the admin API", "room", rm.Name, "id", rm.ID)
	writeJSON(w, http.StatusOK, roomLinksFor(rm, web.BaseURL(r), mod, view))
}

func (s *Server) adminDeleteRoom(w http.ResponseWriter, r *http.Request) {
	err := s.store.DeleteRoom(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, adminapi.Error{Error: fmt.Sprintf("no room with id %q (bbb-balancer rooms list shows them)", r.PathValue("id"))})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, adminapi.Error{Error: "the balancer's database did not answer: " + err.Error()})
		return
	}
	s.log.Info("room deleted through the admin API", "id", r.PathValue("id"))
	writeJSON(w, http.StatusOK, map[string]string{"deleted": r.PathValue("id")})
}

// roomLinks opens rooms (web.Rooms) through the balancer's own BBB API,
// called in process and signed with its own secret: a room's meeting is
// placed and joined exactly like one a front-end creates.
type roomLinks struct{ s *Server }

func (l roomLinks) Room(ctx context.Context, token string) (string, bool, error) {
	r, moderator, err := l.s.store.RoomByToken(ctx, token)
	if errors.Is(err, store.ErrNotFound) {
		return "", false, web.ErrNoRoom
	}
	return r.Name, moderator, err
}

func (l roomLinks) Open(ctx context.Context, token, fullName string) (string, error) {
	r, moderator, err := l.s.store.RoomByToken(ctx, token)
	if errors.Is(err, store.ErrNotFound) {
		return "", web.ErrNoRoom
	}
	if err != nil {
		return "", err
	}
	if !moderator && r.WaitForModerator {
		var running bbb.IsMeetingRunningResponse
		if _, err := l.s.selfCall(ctx, bbb.CallIsMeetingRunning, url.Values{"meetingID": {r.MeetingID}}, &running); err != nil {
			return "", err
		}
		if !running.Running {
			return "", web.ErrWaitForModerator
		}
	}
	create := bbb.CreateRequest{MeetingID: r.MeetingID, Name: r.Name, Record: r.Record, MaxParticipants: r.MaxParticipants}
	var created bbb.CreateResponse
	if _, err := l.s.selfCall(ctx, bbb.CallCreate, create.Values(), &created); err != nil {
		return "", err
	}
	role := bbb.RoleViewer
	if moderator {
		role = bbb.RoleModerator
	}
	resp, err := l.s.selfCall(ctx, bbb.CallJoin, bbb.JoinRequest{MeetingID: r.MeetingID, FullName: fullName, Role: role}.Values(), nil)
	if err != nil {
		return "", err
	}
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || loc == "" {
		return "", fmt.Errorf("the balancer's join answered %d without a redirect", resp.StatusCode)
	}
	l.s.log.Info("room joined through a link", "room", r.Name, "role", role, "meeting", r.MeetingID)
	return loc, nil
}

// selfCall makes a signed BBB API call to this replica's own handler.
// With out, a FAILED answer is an error.
func (s *Server) selfCall(ctx context.Context, call string, params url.Values, out any) (*http.Response, error) {
	alg := bbb.SHA256
	if len(s.cfg.Algorithms) > 0 {
		alg = s.cfg.Algorithms[0]
	}
	query := bbb.SignQuery(alg, call, params.Encode(), s.cfg.Secrets[0])
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/bigbluebutton/api/"+call+"?"+query, nil)
	rec := httptest.NewRecorder()
	s.handler.ServeHTTP(rec, req)
	resp := rec.Result()
	if out != nil {
		data, _ := io.ReadAll(resp.Body)
		if err := bbb.DecodeResponse(call, data, out); err != nil {
			return resp, fmt.Errorf("%s: %w", call, err)
		}
	}
	return resp, nil
}
