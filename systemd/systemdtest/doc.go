// Package systemdtest has fakes of package systemd's interfaces for tests
// that must not touch the host's systemd or logind: an Inhibitor whose
// shutdown signals the test sends, a Notifier that records what it was told,
// and a UnitRestarter that records what it restarted.
package systemdtest
