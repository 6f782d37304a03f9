package testenv

import (
	"sync"
	"time"
)

// Clock is the one fake clock of the project's tests: time stands still
// until Advance (or Set) moves it, and the channels handed out by After fire
// when it passes their instant. It is safe for concurrent use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

// NewClock returns a clock standing at a fixed instant (2026-11-20 08:00 UTC).
func NewClock() *Clock { return NewClockAt(time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)) }

// NewClockAt returns a clock standing at t, for a test whose expectations
// are written for that instant.
func NewClockAt(t time.Time) *Clock { return &Clock{now: t} }

// Now is the clock's current instant.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d and fires every After that is due.
func (c *Clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the clock to t (never backwards) and fires every After that is due.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	if t.After(c.now) {
		c.now = t
	}
	now := c.now
	kept := c.waiters[:0]
	var due []waiter
	for _, w := range c.waiters {
		if !w.at.After(now) {
			due = append(due, w)
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
	c.mu.Unlock()
	for _, w := range due {
		w.ch <- now
	}
}

// After returns a channel that receives the clock's time once it has
// advanced by d (at once when d <= 0).
func (c *Clock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Waiters is how many After channels have not fired yet: a test advances the
// clock once the code under test is known to wait.
func (c *Clock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}
