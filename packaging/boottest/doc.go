// Package boottest holds the systemd boot test of the bbb-agent package: a
// systemd-nspawn container, booted with systemd as its PID 1 from an overlay
// of the host's own root with the built .deb installed, runs the packaged
// unit against a bbb-balancer and a bbb-sim on the host's loopback (the
// container shares the host's network). It shows what a unit test of the
// binary cannot: Type=notify reaching active, the watchdog, a `systemctl
// restart` that does not drain and a `poweroff` that does, through logind
// and the package's logind drop-in. The package has only tests.
package boottest
