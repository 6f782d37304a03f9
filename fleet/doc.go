// Package fleet is the vocabulary bbb-agent and bbb-balancer share: a node's
// role, admin state and liveness, the load it reports, and the rules for
// counting meetings and participants from BBB's getMeetings. Types and rules
// only, no I/O.
package fleet
