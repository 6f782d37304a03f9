// Package balancer is bbb-balancer: the central service that front-ends talk
// to as if it were one BBB server. It keeps the node registry fed by agent
// reports (and polls of operator-added nodes), places new meetings on the
// least-loaded node, proxies the BBB API to the right node, and serves the
// agent and admin APIs.
package balancer
