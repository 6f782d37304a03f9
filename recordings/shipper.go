package recordings

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bbb-agent/bbb-agent/agentapi"
	"github.com/bbb-agent/bbb-agent/internal/clock"
	"github.com/bbb-agent/bbb-agent/recordings/storage"
)

// Clock is the time the Shipper lives by: clock.Real, or testenv.Clock in tests.
type Clock = clock.Clock

// ErrNotYet, wrapped by an Indexer's error, means the fleet cannot take the
// recording yet (the node is not registered again after a restart): the
// shipper asks again after notYetWait, without counting a failed attempt.
var ErrNotYet = errors.New("not yet")

// notYetWait is how soon an index that was not possible yet is tried again.
const notYetWait = 2 * time.Second

// Indexer tells the fleet about a recording format the storage confirmed
// (bbb-balancer's recordings index). It must be an idempotent upsert.
type Indexer interface {
	Index(ctx context.Context, m agentapi.RecordingMetadata) error
}

// Defaults of Config.
const (
	DefaultWorkers      = 2
	DefaultScanInterval = 5 * time.Minute
	DefaultMinBackoff   = 10 * time.Second
	DefaultMaxBackoff   = 10 * time.Minute
	// idleWait bounds a worker's sleep when nothing is due, so a clock
	// jump or a missed wake-up costs at most this long.
	idleWait = time.Minute
)

// Config configures a Shipper. Dir, Queue and Storage are required.
type Config struct {
	Dir     string          // BBB's recordings directory, /var/bigbluebutton
	Queue   *Queue          // the durable queue
	Storage storage.Storage // storage.None keeps recordings on the node
	Indexer Indexer         // nil: nothing to tell (registrar scalelite or none)
	Clock   Clock           // nil: the system clock
	Logger  *slog.Logger    // nil: slog.Default()
	Workers int             // 0: DefaultWorkers
	// ScanInterval is the periodic scan's period; 0: DefaultScanInterval,
	// negative: no periodic scan (the caller scans).
	ScanInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failure, doubled per
	// attempt, with jitter; zero: the defaults.
	MinBackoff, MaxBackoff time.Duration
	// DeleteAfter removes a format's local directory that long after the
	// destination confirmed it (and, with an Indexer, not before the fleet
	// has been told); 0: never.
	DeleteAfter time.Duration
}

// Stats are the Shipper's counters since it started.
type Stats struct {
	Shipped      uint64 // formats confirmed by the storage
	Failed       uint64 // failed attempts (shipping or indexing)
	Quarantined  uint64
	BytesShipped uint64
	Rebuilds     uint64 // formats that changed while they shipped
	Deleted      uint64 // local copies removed
}

// Backlog sums up the recordings not yet where they belong.
type Backlog struct {
	Processing    int       `json:"processing"` // BBB still processing (no published marker)
	Queued        int       `json:"queued"`
	Shipping      int       `json:"shipping"`
	Unindexed     int       `json:"unindexed"` // shipped, the fleet not told yet (with an Indexer)
	Failed        int       `json:"failed"`
	Quarantined   int       `json:"quarantined"`
	KeptLocally   bool      `json:"kept_locally,omitempty"` // storage none: nothing ships
	LastFailure   string    `json:"last_failure,omitempty"`
	LastFailureAt time.Time `json:"last_failure_at,omitzero"`
	FreedBytes    int64     `json:"freed_bytes"`
}

// Pending is what a drain waits for: processing, queued, shipping and
// failed (quarantined rows need an operator and do not hold a drain).
func (b Backlog) Pending() int {
	if b.KeptLocally {
		return b.Processing
	}
	return b.Processing + b.Queued + b.Shipping + b.Failed + b.Unindexed
}

// Shipper ships the queue's rows to the storage.
type Shipper struct {
	cfg  Config
	wake chan struct{}

	shipped, failed, quarantined, bytes, rebuilds, deleted atomic.Uint64
	deleteMu                                               sync.Mutex
}

// NewShipper returns a Shipper; Run starts it.
func NewShipper(cfg Config) *Shipper {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.ScanInterval == 0 {
		cfg.ScanInterval = DefaultScanInterval
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.Storage == nil {
		cfg.Storage = storage.None{}
	}
	return &Shipper{cfg: cfg, wake: make(chan struct{}, 1)}
}

// Stats returns the counters.
func (s *Shipper) Stats() Stats {
	return Stats{Shipped: s.shipped.Load(), Failed: s.failed.Load(), Quarantined: s.quarantined.Load(),
		BytesShipped: s.bytes.Load(), Rebuilds: s.rebuilds.Load(), Deleted: s.deleted.Load()}
}

func (s *Shipper) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Scan finds every finished format under the recordings directory and
// queues the new and changed ones (the periodic scan, and "recordings
// backfill"). It returns how many rows it queued.
func (s *Shipper) Scan(ctx context.Context) (int, error) {
	found, err := Scan(s.cfg.Dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, f := range found {
		changed, err := s.cfg.Queue.Enqueue(ctx, f)
		if err != nil {
			return n, err
		}
		if changed {
			n++
		}
	}
	if n > 0 {
		s.poke()
	}
	return n, nil
}

// ErrNotPublished is Notify's answer for a recording without any
// finished format on the node.
var ErrNotPublished = errors.New("no published format with a metadata.xml")

// Notify queues one recording (every format, or only format when it is not
// empty) and wakes a worker: BBB's post_publish hook calls it through
// "bbb-agent recordings notify". A named format without a metadata.xml is
// queued anyway, so that it ends quarantined with its reason.
func (s *Shipper) Notify(ctx context.Context, recordID, format string) error {
	if recordID == "" || filepath.Base(recordID) != recordID || (format != "" && filepath.Base(format) != format) {
		return fmt.Errorf("recordings: notify: invalid record id %q or format %q", recordID, format)
	}
	found, err := Lookup(s.cfg.Dir, recordID, format)
	if err != nil {
		return err
	}
	if len(found) == 0 {
		if format == "" {
			return fmt.Errorf("recordings: notify %s: %w under %s", recordID, ErrNotPublished, s.cfg.Dir)
		}
		f := Found{RecordID: recordID, Format: format, Dir: filepath.Join(s.cfg.Dir, "published", format, recordID)}
		if err := s.cfg.Queue.enqueueMissing(ctx, f); err != nil {
			return err
		}
		s.poke()
		return nil
	}
	for _, f := range found {
		if _, err := s.cfg.Queue.Enqueue(ctx, f); err != nil {
			return err
		}
	}
	s.poke()
	return nil
}

// Backlog sums up the queue and BBB's processing backlog.
func (s *Shipper) Backlog(ctx context.Context) (Backlog, error) {
	var b Backlog
	var err error
	if b.Processing, err = ProcessingBacklog(s.cfg.Dir); err != nil {
		return b, err
	}
	c, err := s.cfg.Queue.counts(ctx)
	if err != nil {
		return b, err
	}
	b.Queued, b.Shipping, b.Failed, b.Quarantined = c[StateQueued], c[StateShipping], c[StateFailed], c[StateQuarantined]
	if s.cfg.Indexer != nil {
		b.Unindexed = c[StateShipped]
	}
	b.KeptLocally = storage.IsNone(s.cfg.Storage)
	if r, at, ok, err := s.cfg.Queue.lastFailure(ctx); err != nil {
		return b, err
	} else if ok {
		b.LastFailure = r.RecordID + "/" + r.Format + ": " + r.LastError
		b.LastFailureAt = at
	}
	b.FreedBytes, err = s.cfg.Queue.freed(ctx)
	return b, err
}

// Run ships until ctx ends: the workers, the periodic scan and the local
// deletes. With storage none it only scans (status shows the backlog).
func (s *Shipper) Run(ctx context.Context) error {
	if _, err := s.Scan(ctx); err != nil {
		s.cfg.Logger.Warn("recordings: scan failed; the next scan retries", "err", err)
	}
	var wg sync.WaitGroup
	if s.cfg.ScanInterval > 0 {
		wg.Go(func() { s.scanLoop(ctx) })
	}
	if !storage.IsNone(s.cfg.Storage) {
		for range s.cfg.Workers {
			wg.Go(func() { s.worker(ctx) })
		}
	}
	wg.Wait()
	return ctx.Err()
}

func (s *Shipper) scanLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.cfg.Clock.After(s.cfg.ScanInterval):
		}
		if _, err := s.Scan(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("recordings: scan failed; the next scan retries", "err", err)
		}
	}
}

func (s *Shipper) worker(ctx context.Context) {
	for ctx.Err() == nil {
		// A wake-up asked for before this step is answered by it.
		select {
		case <-s.wake:
		default:
		}
		did, err := s.step(ctx)
		if err != nil && ctx.Err() == nil {
			// The queue itself failed (disk full?): wait, never spin.
			s.cfg.Logger.Error("recordings: queue", "err", err)
			did = false
		}
		if did {
			continue
		}
		wait := idleWait
		if due, err := s.cfg.Queue.nextDue(ctx, s.cfg.Indexer != nil); err == nil && !due.IsZero() {
			wait = min(wait, max(due.Sub(s.cfg.Clock.Now()), 0))
		}
		if s.cfg.DeleteAfter > 0 {
			wait = min(wait, s.cfg.DeleteAfter)
		}
		// Due now but another worker holds it, or the clock is behind:
		// still never a busy loop.
		wait = max(wait, time.Second)
		select {
		case <-ctx.Done():
		case <-s.wake:
		case <-s.cfg.Clock.After(wait):
		}
	}
}

// Step does one piece of work, if any is due: ship a row, index a shipped
// one, or delete a local copy. It reports whether it did anything.
func (s *Shipper) step(ctx context.Context) (bool, error) {
	now := s.cfg.Clock.Now()
	if r, ok, err := s.cfg.Queue.claim(ctx, now); err != nil {
		return false, err
	} else if ok {
		s.ship(ctx, r)
		return true, nil
	}
	if s.cfg.Indexer != nil {
		rows, err := s.cfg.Queue.due(ctx, StateShipped, now, 1)
		if err != nil {
			return false, err
		}
		if len(rows) > 0 {
			s.index(ctx, rows[0])
			return true, nil
		}
	}
	if s.cfg.DeleteAfter > 0 {
		return s.deleteDue(ctx, now)
	}
	return false, nil
}

func (s *Shipper) backoff(attempts int) time.Duration {
	d := s.cfg.MinBackoff
	for i := 1; i < attempts && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.cfg.MaxBackoff)
	// Full jitter in the upper half: never zero, never above the cap.
	return d/2 + rand.N(d/2+1)
}

func (s *Shipper) fail(ctx context.Context, r Row, cause error) {
	s.failed.Add(1)
	now := s.cfg.Clock.Now()
	next := now.Add(s.backoff(r.Attempts + 1))
	s.cfg.Logger.Warn("recordings: shipping failed; retrying later", "record_id", r.RecordID, "format", r.Format,
		"attempt", r.Attempts+1, "next_try", next, "err", cause)
	if err := s.cfg.Queue.failed(context.WithoutCancel(ctx), r, StateFailed, cause, now, next); err != nil {
		s.cfg.Logger.Error("recordings: queue", "err", err)
	}
}

func (s *Shipper) quarantine(ctx context.Context, r Row, cause error) {
	s.quarantined.Add(1)
	s.cfg.Logger.Error("recordings: quarantined: fix the recording, then run bbb-agent recordings retry",
		"record_id", r.RecordID, "format", r.Format, "reason", cause)
	if err := s.cfg.Queue.failed(context.WithoutCancel(ctx), r, StateQuarantined, cause, s.cfg.Clock.Now(), time.Time{}); err != nil {
		s.cfg.Logger.Error("recordings: queue", "err", err)
	}
}

// ship ships one claimed row.
func (s *Shipper) ship(ctx context.Context, r Row) {
	dir := r.Dir
	if _, err := os.Stat(dir); err != nil {
		// Moved between published/ and unpublished/?
		if found, lerr := Lookup(s.cfg.Dir, r.RecordID, r.Format); lerr == nil && len(found) > 0 {
			dir = found[0].Dir
		}
	}
	md, err := ReadMetadata(dir)
	if errors.Is(err, ErrBadMetadata) {
		s.quarantine(ctx, r, err)
		return
	}
	if err != nil {
		s.fail(ctx, r, err)
		return
	}
	fp, size, err := Fingerprint(dir)
	if err != nil {
		s.fail(ctx, r, err)
		return
	}
	if fp != r.Fingerprint || dir != r.Dir {
		if err := s.cfg.Queue.setFingerprint(ctx, r, dir, fp, size); err != nil {
			s.fail(ctx, r, err)
			return
		}
	}
	all, err := Lookup(s.cfg.Dir, r.RecordID, "")
	if err != nil {
		s.fail(ctx, r, err)
		return
	}
	sh := storage.Shipment{Item: storage.Item{RecordID: r.RecordID, Format: r.Format, Dir: dir}}
	for _, f := range all {
		sh.All = append(sh.All, storage.Item{RecordID: f.RecordID, Format: f.Format, Dir: f.Dir})
	}
	receipt, err := s.cfg.Storage.Ship(ctx, sh)
	if err != nil {
		if ctx.Err() != nil {
			// Shutting down: not an attempt.
			if err := s.cfg.Queue.requeue(context.WithoutCancel(ctx), r); err != nil {
				s.cfg.Logger.Error("recordings: queue", "err", err)
			}
			return
		}
		if fp2, _, ferr := Fingerprint(dir); ferr == nil && fp2 != fp {
			// It failed because it changed under us (a rebuild): again
			// now, whole, without counting an attempt.
			s.rebuilds.Add(1)
			if err := s.cfg.Queue.rebuilt(context.WithoutCancel(ctx), r); err != nil {
				s.cfg.Logger.Error("recordings: queue", "err", err)
			}
			return
		}
		s.fail(ctx, r, err)
		return
	}
	// A rebuild while it shipped: ship it again, whole.
	if fp2, _, err := Fingerprint(dir); err != nil || fp2 != fp {
		s.rebuilds.Add(1)
		s.cfg.Logger.Info("recordings: changed while shipping; shipping it again", "record_id", r.RecordID, "format", r.Format)
		if err := s.cfg.Queue.rebuilt(context.WithoutCancel(ctx), r); err != nil {
			s.cfg.Logger.Error("recordings: queue", "err", err)
		}
		return
	}
	now := s.cfg.Clock.Now()
	ok, err := s.cfg.Queue.shipped(context.WithoutCancel(ctx), r, fp, receipt.Location, receipt.SHA256, receipt.Size, now)
	if err != nil {
		s.cfg.Logger.Error("recordings: queue", "err", err)
		return
	}
	if !ok {
		s.rebuilds.Add(1)
		return
	}
	s.shipped.Add(1)
	s.bytes.Add(uint64(receipt.Size))
	s.cfg.Logger.Info("recordings: shipped", "record_id", r.RecordID, "format", r.Format, "to", receipt.Location,
		"bytes", receipt.Size, "written", receipt.Written, "removed", receipt.Removed)
	if s.cfg.Indexer != nil {
		r.State, r.ShippedAt, r.Location, r.SHA256, r.Dir = StateShipped, now.UTC(), receipt.Location, receipt.SHA256, dir
		s.indexWith(ctx, r, md)
	}
}

func (s *Shipper) index(ctx context.Context, r Row) {
	md, err := ReadMetadata(r.Dir)
	if err != nil {
		// The local copy is gone (deleted after shipping): the fleet still
		// needs the metadata; tell it what the queue knows.
		md = agentapi.RecordingMetadata{RecordID: r.RecordID, Formats: []agentapi.RecordingFormat{{Type: r.Format}}}
	}
	s.indexWith(ctx, r, md)
}

func (s *Shipper) indexWith(ctx context.Context, r Row, md agentapi.RecordingMetadata) {
	md.Storage, md.Location, md.ShippedAt, md.SHA256 = s.cfg.Storage.String(), r.Location, r.ShippedAt, r.SHA256
	if err := s.cfg.Indexer.Index(ctx, md); err != nil {
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrNotYet) {
			if err := s.cfg.Queue.indexLater(context.WithoutCancel(ctx), r, s.cfg.Clock.Now().Add(notYetWait)); err != nil {
				s.cfg.Logger.Error("recordings: queue", "err", err)
			}
			return
		}
		s.failed.Add(1)
		now := s.cfg.Clock.Now()
		next := now.Add(s.backoff(r.Attempts + 1))
		s.cfg.Logger.Warn("recordings: telling the fleet failed; retrying later", "record_id", r.RecordID, "format", r.Format, "err", err)
		if err := s.cfg.Queue.indexFailed(context.WithoutCancel(ctx), r, err, now, next); err != nil {
			s.cfg.Logger.Error("recordings: queue", "err", err)
		}
		return
	}
	if err := s.cfg.Queue.indexed(context.WithoutCancel(ctx), r); err != nil {
		s.cfg.Logger.Error("recordings: queue", "err", err)
	}
}

// deleteDue removes the local copies confirmed more than DeleteAfter ago
// (with an Indexer, only once indexed: the index needs their metadata.xml).
// The directory is first renamed away (atomic: a crash never leaves a
// half-deleted format that a scan would ship again), then removed.
func (s *Shipper) deleteDue(ctx context.Context, now time.Time) (bool, error) {
	s.deleteMu.Lock()
	defer s.deleteMu.Unlock()
	rows, err := s.cfg.Queue.deletable(ctx, now.Add(-s.cfg.DeleteAfter), s.cfg.Indexer != nil)
	if err != nil {
		return false, err
	}
	did := false
	for _, r := range rows {
		trash := filepath.Join(filepath.Dir(r.Dir), "."+filepath.Base(r.Dir)+".deleting")
		freed := r.Size
		if fp, _, err := Fingerprint(r.Dir); err == nil {
			if fp != r.Fingerprint {
				continue // rebuilt since it shipped: the next scan queues it
			}
			if err := os.Rename(r.Dir, trash); err != nil {
				s.cfg.Logger.Warn("recordings: local delete failed", "dir", r.Dir, "err", err)
				continue
			}
		}
		if err := os.RemoveAll(trash); err != nil {
			s.cfg.Logger.Warn("recordings: local delete failed", "dir", trash, "err", err)
			continue
		}
		if err := s.cfg.Queue.markDeleted(ctx, r, freed, now); err != nil {
			return false, err
		}
		s.deleted.Add(1)
		did = true
		s.cfg.Logger.Info("recordings: local copy deleted after shipping", "record_id", r.RecordID, "format", r.Format, "freed", freed)
	}
	return did, nil
}

// List returns every row of the queue ("bbb-agent recordings list").
func (s *Shipper) List(ctx context.Context) ([]Row, error) { return s.cfg.Queue.List(ctx) }

// Retry makes a recording's failed, quarantined or waiting rows due now
// and wakes a worker ("recordings retry ID" and "recordings ship ID"). It
// returns how many rows it touched; 0 means the queue does not know the
// recording (Notify it first) or it is shipped already.
func (s *Shipper) Retry(ctx context.Context, recordID string) (int, error) {
	n, err := s.cfg.Queue.Retry(ctx, recordID)
	if n > 0 {
		s.poke()
	}
	return n, err
}
