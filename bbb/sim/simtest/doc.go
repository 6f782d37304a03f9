// Package simtest runs a bbb-sim binary for a test (testenv.StartSim) with
// a BBB API client and a /sim control client for it: the one harness the
// end-to-end tests of the commands share.
//
// It is a package of its own and not part of internal/testenv because it
// imports bbb and bbb/sim, whose own tests import testenv.
package simtest
