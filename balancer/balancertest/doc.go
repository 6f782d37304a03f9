// Package balancertest runs a real bbb-balancer in the test's process, as
// net/http/httptest runs an HTTP server: a balancer.Server on a fresh store
// (SQLite in t.TempDir(), or a throwaway PostgreSQL from testenv) behind an
// httptest server on loopback, with an admin API client and a BBB API client
// for it. The tests of agent, registrar and the commands use it instead of
// building their own.
//
// It lives next to the balancer and not in internal/testenv because it
// imports the balancer, and the balancer's own tests import testenv: testenv
// importing the balancer would be an import cycle. For the same reason the
// balancer's internal tests (package balancer) cannot use it and keep their
// own constructor.
package balancertest
