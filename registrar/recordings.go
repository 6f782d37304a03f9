package registrar

import (
	"context"

	"github.com/bbb-agent/bbb-agent/agentapi"
)

// Index tells bbb-balancer that a recording format now lives in the fleet's
// storage (recordings.Indexer): an idempotent upsert by (record ID, format),
// sent with the node's credential once the storage has confirmed every
// byte. Before the node is registered it fails with ErrNotRegistered and the
// shipper retries later.
func (b *Balancer) Index(ctx context.Context, m agentapi.RecordingMetadata) error {
	node, err := b.registered()
	if err != nil {
		return err
	}
	return b.call(ctx, agentapi.PathRecording, agentapi.RecordingRequest{Node: node, Recording: m}, nil)
}
