// Command bbb-sim runs a simulated BigBlueButton server for tests: the BBB
// API at http://ADDR/bigbluebutton/api/ and a JSON control API under /sim/
// (see package github.com/bbb-agent/bbb-agent/bbb/sim). Once it listens it
// prints "listening on http://HOST:PORT" on standard output.
package main
