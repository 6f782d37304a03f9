package testenv

import (
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	c := NewClock()
	start := c.Now()
	ch := c.After(time.Minute)
	if c.Waiters() != 1 {
		t.Fatalf("waiters %d", c.Waiters())
	}
	c.Advance(59 * time.Second)
	select {
	case <-ch:
		t.Fatal("fired early")
	default:
	}
	c.Advance(time.Second)
	select {
	case got := <-ch:
		if !got.Equal(start.Add(time.Minute)) {
			t.Fatalf("fired at %v", got)
		}
	default:
		t.Fatal("did not fire")
	}
	c.Set(start) // never backwards
	if !c.Now().Equal(start.Add(time.Minute)) {
		t.Fatal("moved backwards")
	}
	select {
	case <-c.After(0):
	default:
		t.Fatal("After(0) did not fire at once")
	}
}

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, time.Second, "three polls", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("polled %d times", n)
	}
}

func TestNewClockAt(t *testing.T) {
	at := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	c := NewClockAt(at)
	if !c.Now().Equal(at) {
		t.Fatalf("Now %v, want %v", c.Now(), at)
	}
	c.Advance(time.Second)
	if want := at.Add(time.Second); !c.Now().Equal(want) {
		t.Errorf("after Advance: %v, want %v", c.Now(), want)
	}
}
