package registrar

import (
	"testing"
	"time"
)

func fixed(f float64) func() float64 { return func() float64 { return f } }

func TestBackoff(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name     string
		b        Backoff
		want     []time.Duration
		wantNext time.Duration // after Reset
	}{
		{"top of the range doubles to the cap", Backoff{Min: s, Max: 10 * s, Rand: fixed(1)},
			[]time.Duration{2 * s, 4 * s, 8 * s, 10 * s, 10 * s}, 2 * s},
		{"bottom of the range stays at Min", Backoff{Min: s, Max: 10 * s, Rand: fixed(0)},
			[]time.Duration{s, s, s, s}, s},
		{"middle of the range", Backoff{Min: s, Max: 10 * s, Rand: fixed(0.5)},
			[]time.Duration{1500 * time.Millisecond, 2500 * time.Millisecond, 4500 * time.Millisecond, 5500 * time.Millisecond}, 1500 * time.Millisecond},
		{"zero value uses the defaults", Backoff{Rand: fixed(1)},
			[]time.Duration{2 * s, 4 * s, 8 * s, 16 * s, 32 * s, 64 * s, 2 * time.Minute, 2 * time.Minute}, 2 * s},
		{"Max below Min", Backoff{Min: 5 * s, Max: s, Rand: fixed(1)},
			[]time.Duration{5 * s, 5 * s}, 5 * s},
		{"Rand out of range is clamped", Backoff{Min: s, Max: 3 * s, Rand: fixed(7)},
			[]time.Duration{2 * s, 3 * s}, 2 * s},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.b
			for i, want := range tt.want {
				if got := b.Next(); got != want {
					t.Errorf("Next() #%d = %s, want %s", i+1, got, want)
				}
			}
			b.Reset()
			if got := b.Next(); got != tt.wantNext {
				t.Errorf("Next() after Reset = %s, want %s", got, tt.wantNext)
			}
		})
	}
}

// TestBackoffBounds: with the real random source every delay lies in
// [Min, Max], and the growth never overflows however long it runs.
func TestBackoffBounds(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Hour}
	for i := range 1000 {
		d := b.Next()
		if d < b.Min || d > b.Max {
			t.Fatalf("Next() #%d = %s, outside [%s, %s]", i+1, d, b.Min, b.Max)
		}
	}
	huge := Backoff{Min: time.Nanosecond, Max: time.Duration(1<<63 - 1), Rand: fixed(1)}
	prev := time.Duration(0)
	for i := range 100 {
		d := huge.Next()
		if d < prev {
			t.Fatalf("Next() #%d = %s shrank from %s", i+1, d, prev)
		}
		prev = d
	}
}
