// Package bbb is the BigBlueButton API as a library: request checksums, typed
// requests and XML responses, a client, and the reader for a node's
// bbb-web.properties.
package bbb
