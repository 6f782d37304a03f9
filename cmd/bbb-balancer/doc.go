// Command bbb-balancer is the central service of bbb-agent: `serve` runs it
// (the balancer loop and the HTTP server, supervised together), the other
// commands (`status`, `servers ...`) administer a running one through its
// admin API.
package main
