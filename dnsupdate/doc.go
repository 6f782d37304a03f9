// Package dnsupdate gives a node its DNS records. The plan step (Desired,
// Compute) works out, in plain code, which records a node should have and
// what must change, never touching a name another owner holds; providers
// (route53, rfc2136) only read the current records and apply a plan, and
// Manager asks the authoritative servers whether they answer it.
package dnsupdate
