//go:build !linux

package storage

import "errors"

// exchange is Linux's; elsewhere the caller falls back to two renames.
func exchange(a, b string) error { return errors.ErrUnsupported }
