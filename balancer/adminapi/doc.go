// Package adminapi is the wire contract of bbb-balancer's admin API
// (/admin/v1/, bearer admin token) and the client the CLI uses.
package adminapi
