// Package store is the balancer's persistence: the node registry with each
// node's newest load, and the placement of meetings on nodes. It runs on
// embedded SQLite (one balancer) or on PostgreSQL (balancer replicas sharing
// one database), with one set of queries and versioned migrations.
package store
