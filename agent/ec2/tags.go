package ec2

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrTagsNotExposed: the instance's tags are not in its instance metadata.
// EC2 leaves them out unless the instance, or its launch template, has
// InstanceMetadataTags=enabled.
var ErrTagsNotExposed = errors.New("instance tags are not in the instance metadata (InstanceMetadataTags=enabled allows them)")

// InstanceTags returns the instance's tags whose keys start with prefix
// (e.g. "bbb-agent:"), by their whole key. It lists the keys at
// tags/instance and reads the value of each one with the prefix. When the
// instance's tags are not in its metadata the error is ErrTagsNotExposed
// (errors.Is); other failures are MetadataErrors.
//
// Only keys EC2 can expose are there: letters, digits and + - = . , _ : @
// (no "/", no spaces); an instance with another tag key and tags in its
// metadata does not launch.
func (m *Metadata) InstanceTags(ctx context.Context, prefix string) (map[string]string, error) {
	listing, err := m.get(ctx, itemInstanceTags)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", ErrTagsNotExposed, err)
	}
	if err != nil {
		return nil, err
	}
	tags := map[string]string{}
	for _, key := range strings.Split(listing, "\n") {
		key = strings.TrimSpace(key)
		if key == "" || !strings.HasPrefix(key, prefix) {
			continue
		}
		value, err := m.get(ctx, itemInstanceTags+"/"+key)
		if errors.Is(err, ErrNotFound) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, err
		}
		tags[key] = value
	}
	return tags, nil
}
