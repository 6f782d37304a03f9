package systemd

import (
	"context"
	"fmt"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// UnitRestarter restarts a systemd unit, such as bbb-web.service after its
// TURN configuration changed.
type UnitRestarter interface {
	// RestartUnit restarts the unit and waits until systemd's job for it
	// is finished.
	RestartUnit(ctx context.Context, name string) error
}

// Units is the UnitRestarter of the running system: it asks systemd over
// the system bus, one connection per call (restarts are rare). The zero
// value is ready to use.
type Units struct{}

var _ UnitRestarter = Units{}

// RestartUnit queues a restart job in "replace" mode and waits for its
// result: "done" is success; any other result (failed, timeout, canceled,
// dependency, skipped) is an error that names it.
func (Units) RestartUnit(ctx context.Context, name string) error {
	conn, err := sddbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return fmt.Errorf("systemd: restart %s: systemd not reachable over D-Bus: %w", name, err)
	}
	defer conn.Close()
	// Buffered: go-systemd sends the result while holding a lock, and
	// nobody receives it once ctx has ended.
	result := make(chan string, 1)
	if _, err := conn.RestartUnitContext(ctx, name, "replace", result); err != nil {
		return fmt.Errorf("systemd: restart %s: %w", name, err)
	}
	select {
	case r := <-result:
		if r != "done" {
			return fmt.Errorf("systemd: restart %s: job finished with result %q", name, r)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("systemd: restart %s: waiting for the job: %w", name, ctx.Err())
	}
}
