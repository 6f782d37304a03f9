// Package host reads what bbb-agent reports about the machine it runs on: CPU,
// load averages, memory, network throughput and free disk space (a Sample,
// through gopsutil), and the machine's public and private IP addresses. The
// figures are read relative to a root directory, which gopsutil is pointed
// at, so tests run against trees under testdata/.
package host
