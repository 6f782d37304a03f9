// Package bbb is the BigBlueButton API as a library: request checksums, typed
// requests and XML responses, the API's typed errors (APIError, with BBB's
// message keys), the IDs and dates bbb-web derives for a meeting, a client,
// and the reader for a node's bbb-web.properties. Both the balancer (which
// serves the API) and the agent (which calls its node's) stand on it.
package bbb
