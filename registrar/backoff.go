package registrar

import (
	"math/rand/v2"
	"time"
)

// Defaults of a zero Backoff.
const (
	DefaultBackoffMin = time.Second
	DefaultBackoffMax = 2 * time.Minute
)

// Backoff spaces the agent's retries against a balancer: capped exponential
// backoff with full jitter above a floor. The n-th delay since the last Reset
// (n = 0, 1, ...) is drawn uniformly from [Min, min(Max, Min·2^(n+1))], so the
// ceiling doubles until it reaches Max while every draw may still land
// anywhere down to Min, which keeps a fleet's retries after a balancer outage
// spread out. The zero value is usable (DefaultBackoffMin,
// DefaultBackoffMax); a Backoff is not safe for concurrent use.
type Backoff struct {
	Min, Max time.Duration
	// Rand returns a number in [0, 1) (others are clamped to [0, 1]); nil
	// means math/rand/v2's Float64. Tests fix it to get repeatable delays.
	Rand func() float64

	attempt int
}

// Next returns the delay before the next retry and counts the attempt.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = DefaultBackoffMin
	}
	if hi <= 0 {
		hi = DefaultBackoffMax
	}
	if hi < lo {
		hi = lo
	}
	ceiling := hi
	// lo<<(n+1) stays below hi only while it does not overflow.
	if n := b.attempt + 1; n < 62 && lo <= hi>>n {
		ceiling = lo << n
	}
	b.attempt++
	r := rand.Float64
	if b.Rand != nil {
		r = b.Rand
	}
	span := ceiling - lo
	add := time.Duration(min(max(r(), 0), 1) * float64(span))
	if add < 0 || add > span { // float64 rounding near the int64 limit
		add = span
	}
	return lo + add
}

// Reset starts the growth again, after a success.
func (b *Backoff) Reset() { b.attempt = 0 }
