package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/mem"
	psnet "github.com/shirou/gopsutil/v4/net"
)

// fileError says which file failed, without repeating the path an
// *fs.PathError already carries.
func fileError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("reading %s: %w", path, err)
}

// cpuTimes are the aggregate CPU counters of /proc/stat, in clock ticks.
type cpuTimes struct{ busy, idle uint64 }

// ticks sums a CPU line's counters. Busy time is user, nice, system, irq,
// softirq and steal; idle time is idle and iowait. guest and guest_nice are
// already part of user and nice and are not added again.
func ticks(t cpu.ExTimesStat) cpuTimes {
	return cpuTimes{
		busy: t.User + t.Nice + t.System + t.Irq + t.Softirq + t.Steal,
		idle: t.Idle + t.Iowait,
	}
}

// busyPercent is the busy share of the time between two readings, false if
// no tick passed. Each part is clamped at zero: iowait is known to step
// backwards on tickless kernels.
func busyPercent(prev, cur cpuTimes) (float64, bool) {
	busy := cur.busy - min(prev.busy, cur.busy)
	idle := cur.idle - min(prev.idle, cur.idle)
	if busy+idle == 0 {
		return 0, false
	}
	return 100 * float64(busy) / float64(busy+idle), true
}

// readLoadavg reads the three load averages of /proc/loadavg at path.
//
// This is the one reading not made through gopsutil: load.AvgWithContext
// reads loadavg below the root it is given, but when that fails (the file
// missing, unreadable or malformed) it returns, with no error, the load
// averages of sysinfo(2), which are those of the kernel the agent runs on,
// not of the root. A Collector pointed at another tree would then report
// this machine's load in its place, and nothing would name the file.
func readLoadavg(path string) (load1, load5, load15 float64, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, 0, fileError(path, err)
	}
	fields := strings.Fields(string(data))
	if len(fields) < 3 {
		return 0, 0, 0, fileError(path, fmt.Errorf("%d fields, want at least 3", len(fields)))
	}
	var loads [3]float64
	for i := range loads {
		if loads[i], err = strconv.ParseFloat(fields[i], 64); err != nil {
			return 0, 0, 0, fileError(path, err)
		}
	}
	return loads[0], loads[1], loads[2], nil
}

// checkMemory rejects what gopsutil reads from a meminfo without a usable
// MemTotal: a zero total, or an available amount above it, which would make
// the used amount wrap around.
func checkMemory(vm *mem.VirtualMemoryStat) error {
	switch {
	case vm.Total == 0:
		return errors.New("no MemTotal")
	case vm.Available > vm.Total:
		return fmt.Errorf("MemAvailable %d exceeds MemTotal %d", vm.Available, vm.Total)
	}
	return nil
}

// ifCounters are an interface's byte counters.
type ifCounters struct {
	name   string
	rx, tx uint64
}

// netMoved appends the byte counters of the counted interfaces among nics to
// current and returns it with how far they moved since prev. A counter that
// went backwards was reset (interface re-created, driver reloaded) or
// wrapped (32-bit counters): it adds its current value, what it counted
// since, a lower bound that never spikes. An interface missing from prev
// appeared since and adds its current values.
func netMoved(nics []psnet.IOCountersStat, only []string, prev, current []ifCounters) ([]ifCounters, uint64, uint64) {
	var rx, tx uint64
	for _, nic := range nics {
		if !counted(nic.Name, only) {
			continue
		}
		before := find(prev, nic.Name, len(current))
		rx += moved(before.rx, nic.BytesRecv)
		tx += moved(before.tx, nic.BytesSent)
		current = append(current, ifCounters{name: nic.Name, rx: nic.BytesRecv, tx: nic.BytesSent})
	}
	return current, rx, tx
}

// moved is how far a counter went from prev to cur; cur if it went backwards.
func moved(prev, cur uint64) uint64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// counted says whether interface name is counted: listed in only, or not lo
// when only is empty.
func counted(name string, only []string) bool {
	if len(only) == 0 {
		return name != "lo"
	}
	return slices.Contains(only, name)
}

// find looks up name in counters, trying index hint first: interfaces keep
// their order in /proc/net/dev from one sample to the next. An interface
// not found has zero counters.
func find(counters []ifCounters, name string, hint int) ifCounters {
	if hint < len(counters) && counters[hint].name == name {
		return counters[hint]
	}
	for _, c := range counters {
		if c.name == name {
			return c
		}
	}
	return ifCounters{}
}
