package main

import (
	"os"
	"runtime/debug"
)

// defaultGCPercent is the Go collector's target (GOGC) in `bbb-balancer
// serve` when the environment sets none.
//
// Most of a balancer's live heap is the fleet it holds for as long as it
// runs (the nodes, the meeting cache, the dashboard's history), and most of
// what it allocates is garbage within one request. With Go's default of
// 100 the heap grows to twice the live heap before each collection; at 40,
// to 1.4 times. Measured at 10,000 nodes and 100,000 meetings
// (BenchmarkMemoryProcess, README "Sizing"): some 20 MiB less resident
// memory, for about 0.01 of a core more collection while the fleet
// reports. GOGC (and GOMEMLIMIT) in the environment win, as in any Go
// program: GOGC=100 gives Go's default back.
const defaultGCPercent = 40

// setGCPercent applies defaultGCPercent unless the environment sets GOGC,
// and returns the percent in force (-1: off).
func setGCPercent() int {
	if v, ok := os.LookupEnv("GOGC"); ok && v != "" {
		p := debug.SetGCPercent(100) // read the runtime's, from GOGC
		debug.SetGCPercent(p)
		return p
	}
	debug.SetGCPercent(defaultGCPercent)
	return defaultGCPercent
}
