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
// 100 the heap grows to twice the live heap before each collection; at 25,
// to 1.25 times. Measured in a bbb-balancer process on 2 cores holding
// 10,000 nodes and 100,000 meetings: its resident memory after a join of
// every meeting, and the collector's CPU while every node reports every
// 5 s:
//
//	GOGC  resident  collector
//	 100  76 MiB    0.008 of a core
//	  40  64 MiB    0.018
//	  30  63 MiB    0.028
//	  25  62 MiB    0.033
//
// What it costs is CPU where the balancer allocates fastest: joins at the
// rate that fills both cores, 16,400-19,600 a second measured against
// 21,500-22,900 with GOGC=100 (10,000 nodes' 100,000 meetings of ten
// participants joining within ten minutes make 1,700 a second). A
// deployment that needs more, or a fleet several times bigger (whose live
// heap is as many times bigger), can set GOGC=100 to spend memory instead:
// GOGC (and GOMEMLIMIT) in the environment win, as in any Go program.
const defaultGCPercent = 25

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
