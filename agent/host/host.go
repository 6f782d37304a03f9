package host

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/common"
	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/mem"
	psnet "github.com/shirou/gopsutil/v4/net"
)

// DefaultDiskPath is where BBB keeps its recordings.
const DefaultDiskPath = "/var/bigbluebutton"

// Config says where a Collector reads from.
type Config struct {
	// Root is the host's root directory: "" or "/" for the live system.
	// proc/ and DiskPath are read below it.
	Root string
	// DiskPath is the directory whose file system's free space is reported,
	// relative to Root; DefaultDiskPath if empty. It must exist.
	DiskPath string
	// Interfaces are the network interfaces whose traffic is counted; empty
	// means every interface but lo. A listed interface the host lacks counts
	// nothing.
	Interfaces []string
	// Clock times the samples; time.Now if nil.
	Clock func() time.Time
}

// Sample is one reading of the host.
type Sample struct {
	// Time is when the sample was taken; Interval is the time since the
	// previous successful sample, 0 for the first.
	Time     time.Time
	Interval time.Duration
	// CPUPercent is the busy share of all online CPUs together, 0..100, over
	// the interval; since boot for the first sample.
	CPUPercent float64
	// CPUCores is the number of online logical CPUs.
	CPUCores             int
	Load1, Load5, Load15 float64
	// MemUsedBytes is MemTotal - MemAvailable: page cache the kernel can drop
	// is not "used". gopsutil estimates MemAvailable on kernels before 3.14.
	MemTotalBytes, MemUsedBytes uint64
	// NetRxBytesPerSec and NetTxBytesPerSec are the counted interfaces'
	// throughput over the interval; 0 for the first sample.
	NetRxBytesPerSec, NetTxBytesPerSec float64
	// DiskFreeBytes is the space available to unprivileged users on DiskPath's
	// file system.
	DiskFreeBytes uint64
}

// Collector takes Samples. CPU and network figures are rates between
// consecutive samples, so one Collector should serve one report loop; it is
// safe for concurrent use.
type Collector struct {
	// env points gopsutil at the root's proc/, sys/ and etc/, whatever the
	// agent's HOST_PROC, HOST_SYS and HOST_ETC environment variables say.
	env common.EnvMap
	// The files behind the readings, named by the errors.
	statPath, loadavgPath, meminfoPath, netDevPath, diskPath string
	ifaces                                                   []string
	clock                                                    func() time.Time

	mu sync.Mutex
	// The baseline: the previous successful sample and its raw counters.
	sampled bool
	last    Sample
	cpu     cpuTimes
	// net is the counted interfaces' counters at the baseline; scratch
	// receives the current ones and becomes the baseline on success.
	net, scratch []ifCounters
}

// NewCollector returns a Collector reading below cfg.Root.
func NewCollector(cfg Config) *Collector {
	root := cfg.Root
	if root == "" {
		root = "/"
	}
	diskPath := cfg.DiskPath
	if diskPath == "" {
		diskPath = DefaultDiskPath
	}
	clock := cfg.Clock
	if clock == nil {
		clock = time.Now
	}
	proc := filepath.Join(root, "proc")
	return &Collector{
		env: common.EnvMap{
			common.HostProcEnvKey: proc,
			common.HostSysEnvKey:  filepath.Join(root, "sys"),
			common.HostEtcEnvKey:  filepath.Join(root, "etc"),
		},
		statPath:    filepath.Join(proc, "stat"),
		loadavgPath: filepath.Join(proc, "loadavg"),
		meminfoPath: filepath.Join(proc, "meminfo"),
		netDevPath:  filepath.Join(proc, "net", "dev"),
		diskPath:    filepath.Join(root, diskPath),
		ifaces:      append([]string(nil), cfg.Interfaces...),
		clock:       clock,
	}
}

// Sample reads the host. The first call sets the baseline for the rates: it
// reports the CPU average since boot and no network throughput. A sample
// taken within the same kernel tick as the previous one (or with a clock
// that did not advance) repeats the previous CPU or network figures.
//
// Sample reads everything or nothing: on error, which names the file that
// failed, it returns no figures and keeps the baseline, so the next
// successful Sample covers the whole time since the last one.
func (c *Collector) Sample(ctx context.Context) (Sample, error) {
	if err := ctx.Err(); err != nil {
		return Sample{}, err
	}
	ctx = context.WithValue(ctx, common.EnvKey, c.env)
	c.mu.Lock()
	defer c.mu.Unlock()

	s := Sample{Time: c.clock()}
	if c.sampled {
		s.Interval = s.Time.Sub(c.last.Time)
	}

	// cpu.ExLinux, not cpu.TimesWithContext: its counters are the kernel's
	// ticks as read, not converted to float seconds, and it returns the read
	// and parse errors that cpu.TimesWithContext drops, leaving no CPU lines.
	ex := cpu.NewExLinux()
	total, err := ex.TimesWithContext(ctx, false)
	if err == nil && len(total) == 0 {
		err = errors.New("no cpu line")
	}
	if err != nil {
		return Sample{}, fileError(c.statPath, err)
	}
	// The per-CPU lines of proc/stat are the online CPUs. Not
	// cpu.CountsWithContext: it reads proc/cpuinfo, which grows with the
	// cores and costs the kernel more to produce (3.6 times the time of this
	// read on two cores).
	perCPU, err := ex.TimesWithContext(ctx, true)
	if err != nil {
		return Sample{}, fileError(c.statPath, err)
	}
	s.CPUCores = len(perCPU)
	times := ticks(total[0])
	if pct, ok := busyPercent(c.cpu, times); ok {
		s.CPUPercent = pct
	} else {
		s.CPUPercent = c.last.CPUPercent
	}

	if s.Load1, s.Load5, s.Load15, err = readLoadavg(c.loadavgPath); err != nil {
		return Sample{}, err
	}

	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err == nil {
		err = checkMemory(vm)
	}
	if err != nil {
		return Sample{}, fileError(c.meminfoPath, err)
	}
	// Not vm.Used: the same difference, but checked above.
	s.MemTotalBytes, s.MemUsedBytes = vm.Total, vm.Total-vm.Available

	nics, err := psnet.IOCountersWithContext(ctx, true)
	if err != nil {
		return Sample{}, fileError(c.netDevPath, err)
	}
	var rx, tx uint64
	c.scratch, rx, tx = netMoved(nics, c.ifaces, c.net, c.scratch[:0])
	switch secs := s.Interval.Seconds(); {
	case secs > 0:
		s.NetRxBytesPerSec = float64(rx) / secs
		s.NetTxBytesPerSec = float64(tx) / secs
	case c.sampled:
		s.NetRxBytesPerSec = c.last.NetRxBytesPerSec
		s.NetTxBytesPerSec = c.last.NetTxBytesPerSec
	}

	usage, err := disk.UsageWithContext(ctx, c.diskPath)
	if err != nil {
		return Sample{}, fmt.Errorf("statfs %s: %w", c.diskPath, err)
	}
	s.DiskFreeBytes = usage.Free

	c.sampled = true
	c.last = s
	c.cpu = times
	c.net, c.scratch = c.scratch, c.net
	return s, nil
}
