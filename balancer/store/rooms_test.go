package store

import (
	"errors"
	"testing"
)

func TestRooms(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store, _ backend) {
		ctx := t.Context()
		r, err := s.CreateRoom(ctx, Room{Name: "Physics 101", ModeratorHash: TokenHash("mod"), ViewerHash: TokenHash("view"),
			Record: true, MaxParticipants: 30, WaitForModerator: true, CreatedAt: t0})
		if err != nil {
			t.Fatal(err)
		}
		if r.ID == "" || r.MeetingID == "" {
			t.Fatalf("created room %+v: want an ID and a meeting ID", r)
		}
		got, mod, err := s.RoomByToken(ctx, "mod")
		if err != nil || !mod || got != r {
			t.Fatalf("RoomByToken(mod) = %+v, %v, %v; want %+v, true", got, mod, err, r)
		}
		if _, mod, err := s.RoomByToken(ctx, "view"); err != nil || mod {
			t.Fatalf("RoomByToken(view) = %v, %v; want the viewer link", mod, err)
		}
		if _, _, err := s.RoomByToken(ctx, "guess"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("RoomByToken(guess) err = %v, want ErrNotFound", err)
		}
		if _, err := s.SetRoomHashes(ctx, r.ID, TokenHash("mod2"), TokenHash("view2")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.RoomByToken(ctx, "mod"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("old link after rotation: err = %v, want ErrNotFound", err)
		}
		if _, mod, err := s.RoomByToken(ctx, "mod2"); err != nil || !mod {
			t.Fatalf("new moderator link: %v, %v", mod, err)
		}
		list, err := s.Rooms(ctx)
		if err != nil || len(list) != 1 || list[0].Name != "Physics 101" || !list[0].Record || list[0].MaxParticipants != 30 {
			t.Fatalf("Rooms = %+v, %v", list, err)
		}
		if err := s.DeleteRoom(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteRoom(ctx, r.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second delete err = %v, want ErrNotFound", err)
		}
		if _, err := s.Room(ctx, r.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Room after delete err = %v", err)
		}
	})
}
