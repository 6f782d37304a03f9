// Package registrar is how a node's agent talks to the load balancer in front
// of it: bbb-balancer's agent API, or Scalelite's server management API.
// Both sit behind one small interface so the agent's lifecycle does not care
// which balancer the fleet runs; Backoff spaces the agent's retries.
package registrar
