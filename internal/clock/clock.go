// Package clock is the one notion of time the daemons' loops use: tell the
// time and wait. The wall clock in production; testenv.Clock in tests, so
// that no test sleeps for a timeout to pass.
package clock

import "time"

// Clock tells the time and waits.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// Real is the wall clock: time.Now and time.After.
type Real struct{}

// Now is time.Now.
func (Real) Now() time.Time { return time.Now() }

// After is time.After.
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }
