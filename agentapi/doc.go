// Package agentapi is the wire contract between bbb-agent and bbb-balancer:
// the JSON bodies of /agent/v1/ and their paths. Both sides import it, so a
// field added here reaches both.
package agentapi
