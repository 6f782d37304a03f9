// Package records holds the balancer's own records of the fleet: nodes as
// it knows them (with their secrets and the source of their load), load
// reports as received, and meeting placements. The words both sides share
// (admin state, liveness, role, load) live in fleet/.
package records
