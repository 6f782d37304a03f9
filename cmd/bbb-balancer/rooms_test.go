package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/bbb-agent/bbb-agent/balancer"
	"github.com/bbb-agent/bbb-agent/balancer/store"
)

func TestRoomsCommands(t *testing.T) {
	st, err := store.Open(context.Background(), "sqlite:"+t.TempDir()+"/balancer.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv, err := balancer.New(context.Background(), balancer.Config{Secrets: []string{"balancer-secret-123"}, AgentToken: "agent-tok",
		AdminToken: "admin-tok", Logger: slog.New(slog.DiscardHandler)}, st)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		app := newApp()
		app.Writer = &out
		err := app.Run(append([]string{"bbb-balancer", "--url", ts.URL, "--admin-token", "admin-tok"}, args...))
		return out.String(), err
	}
	out, err := run("rooms", "create", "Physics 101", "--record", "--max-participants", "30")
	if err != nil {
		t.Fatal(err)
	}
	links := regexp.MustCompile(`(?m)^(moderator|participant): +(\S+)$`).FindAllStringSubmatch(out, -1)
	if len(links) != 2 || !strings.HasPrefix(links[0][2], ts.URL+"/rooms/") || links[0][2] == links[1][2] {
		t.Fatalf("rooms create printed:\n%s", out)
	}
	out, err = run("rooms", "list", "--json")
	var rooms []balancer.Room
	if err != nil || json.Unmarshal([]byte(out), &rooms) != nil || len(rooms) != 1 || rooms[0].Name != "Physics 101" ||
		!rooms[0].Record || rooms[0].MaxParticipants != 30 || rooms[0].WaitForModerator {
		t.Fatalf("rooms list --json: %v\n%s", err, out)
	}
	if strings.Contains(out, strings.TrimPrefix(links[0][2], ts.URL+"/rooms/")) {
		t.Fatal("rooms list shows a link's token")
	}
	out, err = run("rooms", "rotate", rooms[0].ID)
	if err != nil || !strings.Contains(out, "moderator:") || strings.Contains(out, links[0][2]) {
		t.Fatalf("rooms rotate: %v\n%s", err, out)
	}
	if _, err := run("rooms", "delete", rooms[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := run("rooms", "delete", rooms[0].ID); err == nil || !strings.Contains(err.Error(), "no room with id") {
		t.Fatalf("deleting a deleted room: %v", err)
	}
	if _, err := run("rooms", "create"); err == nil || !strings.Contains(err.Error(), "rooms create needs the room's name") {
		t.Fatalf("create without a name: %v", err)
	}
}
