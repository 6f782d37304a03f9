package main

import (
	"runtime/debug"
	"testing"
)

// TestSetGCPercent: serve runs the collector at defaultGCPercent, unless
// the environment sets GOGC, which wins.
func TestSetGCPercent(t *testing.T) {
	t.Cleanup(func() { debug.SetGCPercent(100) })
	t.Setenv("GOGC", "")
	debug.SetGCPercent(100)
	if got := setGCPercent(); got != defaultGCPercent {
		t.Errorf("without GOGC: setGCPercent() = %d, want %d", got, defaultGCPercent)
	}
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Errorf("without GOGC the runtime's percent is %d, want %d", got, defaultGCPercent)
	}
	// The runtime read GOGC at start; t.Setenv cannot change that, so the
	// test sets what GOGC=150 would have set.
	t.Setenv("GOGC", "150")
	debug.SetGCPercent(150)
	if got := setGCPercent(); got != 150 {
		t.Errorf("with GOGC=150: setGCPercent() = %d, want 150", got)
	}
	if got := debug.SetGCPercent(100); got != 150 {
		t.Errorf("with GOGC=150 the runtime's percent is %d, want 150", got)
	}
}
