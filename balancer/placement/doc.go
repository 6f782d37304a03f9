// Package placement decides which node a new meeting goes to. It is a pure
// function of the candidates the caller hands in: no I/O, no clock, the same
// input always gives the same node.
//
// # Load
//
// A node's load is a weighted sum of the figures it last reported, plus a
// reservation for the meetings placed on it since that report, times its load
// multiplier:
//
//	load = m × ( Wp·participants + Wv·video + Wa·voice + Wm·meetings + Wc·cpu%
//	           + reserved × (Wm + Wp·E) )
//
// m is records.Node.LoadMultiplier (0 or less counts as 1; like Scalelite's
// load_multiplier, below 1 makes a node look emptier, so a bigger server
// takes more). reserved is Candidate.Reserved: meetings placed on the node
// that no report reflects yet; each weighs like a typical new meeting, one
// meeting of E = Policy.ExpectedParticipants participants. Without it, a
// burst of creates between two reports would all land on the node that
// looked emptiest at the last report. The weights W are in Policy;
// DefaultPolicy explains the defaults.
//
// # Choice
//
// Only nodes with role bbb, admin state enabled and online are eligible, and
// the server tag request (ParseServerTag) narrows them further. Among those,
// Pick prefers, in order: nodes reporting a healthy BBB; nodes at or under
// the CPU ceiling; for an optional tag request, nodes with a requested tag
// over the untagged fallback; then the lowest load; then fewer reservations;
// then the name. So an unhealthy or overloaded node still gets a meeting when
// nothing better is eligible, and the Decision says so.
package placement
