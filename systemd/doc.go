// Package systemd is bbb-agent's integration with systemd and logind: it
// tells the service manager what the agent is doing (sd_notify, watchdog),
// holds logind's shutdown delay lock so a shutdown waits for the drain, and
// restarts units. The D-Bus details sit behind small interfaces (Notifier,
// Inhibitor, UnitRestarter); the agent decides when to drain, not this
// package. The unit file and the logind drop-in that packaging installs live
// beside the code.
package systemd
