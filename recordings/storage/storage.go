package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Item is one published format of one recording on the node.
type Item struct {
	RecordID string
	Format   string
	// Dir is the format's directory, such as
	// /var/bigbluebutton/published/presentation/<record_id>.
	Dir string
}

// Shipment is what to ship: Item, plus every format of the same recording
// present on the node (Item included), for back-ends that pack a recording
// whole (spool).
type Shipment struct {
	Item
	All []Item
}

// Receipt is the destination's confirmation of a shipment.
type Receipt struct {
	// Location is where it went: the tar file or the object prefix.
	Location string
	// Size is the bytes of the format's files (the tar's for spool).
	Size int64
	// SHA256 is the hex SHA-256 of the manifest (s3) or the tar (spool).
	SHA256 string
	// Written counts the files or objects actually written; 0 when the
	// destination already had every byte.
	Written int
	// Removed counts the objects of an earlier build (a rebuild with
	// another file set) deleted from the destination (s3; dir and spool
	// replace a recording whole).
	Removed int
}

// Storage is a destination for recordings.
type Storage interface {
	// Ship copies the shipment to the destination and returns once the
	// destination has confirmed every byte. Shipping the same content
	// again writes nothing new.
	Ship(ctx context.Context, s Shipment) (Receipt, error)
	// Check writes and deletes a probe object or file.
	Check(ctx context.Context) error
	// String names the destination, without secrets.
	String() string
}

// Options are the settings a URL does not carry.
type Options struct {
	// S3Endpoint, when set, is an S3-compatible server's URL; path-style
	// addressing is used with it.
	S3Endpoint string
	// S3Region overrides the region of the AWS configuration.
	S3Region string
	// HTTPClient, when set, carries the S3 requests (tests count them).
	HTTPClient interface {
		Do(*http.Request) (*http.Response, error)
	}
}

// ErrNone is what None.Ship returns: recordings stay on the node.
var ErrNone = errors.New("recordings storage is none: recordings stay on the node")

// None keeps recordings on the node.
type None struct{}

func (None) Ship(context.Context, Shipment) (Receipt, error) { return Receipt{}, ErrNone }
func (None) Check(context.Context) error                     { return nil }
func (None) String() string                                  { return "none" }

// IsNone reports whether s keeps recordings on the node.
func IsNone(s Storage) bool {
	_, ok := s.(None)
	return s == nil || ok
}

// Open returns the storage a URL names: none, spool:/path, dir:/path or
// s3://bucket/prefix. Credentials for S3 come from the standard AWS chain.
func Open(ctx context.Context, rawURL string, o Options) (Storage, error) {
	switch {
	case rawURL == "" || rawURL == "none":
		return None{}, nil
	case strings.HasPrefix(rawURL, "spool:"):
		dir := strings.TrimPrefix(strings.TrimPrefix(rawURL, "spool:"), "//")
		if !filepath.IsAbs(dir) {
			return nil, fmt.Errorf("recordings storage %q: the spool directory must be an absolute path, as spool:/var/spool/bbb-agent", rawURL)
		}
		return NewSpool(dir), nil
	case strings.HasPrefix(rawURL, "dir:"):
		dir := strings.TrimPrefix(strings.TrimPrefix(rawURL, "dir:"), "//")
		if !filepath.IsAbs(dir) {
			return nil, fmt.Errorf("recordings storage %q: the directory must be an absolute path, as dir:/var/lib/bbb-balancer/recordings", rawURL)
		}
		return NewDir(dir), nil
	case strings.HasPrefix(rawURL, "s3://"):
		u, err := url.Parse(rawURL)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("recordings storage %q: want s3://BUCKET/PREFIX", rawURL)
		}
		return NewS3(ctx, u.Host, strings.Trim(u.Path, "/"), o)
	}
	return nil, fmt.Errorf("recordings storage %q: want none, spool:/DIR, dir:/DIR or s3://BUCKET/PREFIX", rawURL)
}

// File is one regular file of a format directory.
type File struct {
	Path string // relative, slash-separated
	Size int64
	Mode fs.FileMode
	Mod  int64 // mtime, Unix nanoseconds
}

// ListFiles returns a format directory's regular files, sorted by path.
// Symbolic links and other non-regular files are skipped.
func ListFiles(dir string) ([]File, error) {
	var files []File
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		files = append(files, File{Path: filepath.ToSlash(rel), Size: fi.Size(), Mode: fi.Mode().Perm(), Mod: fi.ModTime().UnixNano()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return files, nil
}

// fileSHA256 streams a file through SHA-256.
func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
