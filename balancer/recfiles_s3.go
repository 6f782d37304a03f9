package balancer

import (
	"context"
	"fmt"
	"path"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/bbb-agent/bbb-agent/balancer/store"
)

// s3Files is the recordings bucket the agents ship to (recordings/storage's
// layout: <prefix>/<format>/<record_id>/<path>, manifest.json last). Objects
// never move: the index decides what is published and playback enforces
// it; a delete removes the objects.
type s3Files struct {
	client *s3.Client
	bucket string
	prefix string
}

// newS3Files takes its credentials from the standard AWS chain; endpoint,
// when set, is an S3-compatible server addressed path-style.
func newS3Files(ctx context.Context, bucket, prefix, endpoint string) (*s3Files, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("recordings storage s3: load the AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
			o.UsePathStyle = true
		}
	})
	return &s3Files{client: client, bucket: bucket, prefix: prefix}, nil
}

func (s *s3Files) String() string { return "s3://" + path.Join(s.bucket, s.prefix) }

// formatPrefix is a format's key prefix, ending in "/".
func (s *s3Files) formatPrefix(format, recordID string) string {
	return path.Join(s.prefix, format, recordID) + "/"
}

// Sync deletes a deleted recording's objects, the manifest first so that a
// half-deleted format is never taken for a complete one.
func (s *s3Files) Sync(ctx context.Context, r store.Recording) error {
	if r.State != store.RecordingDeleted {
		return nil
	}
	for _, f := range r.Formats {
		if !safeName(f.Type) || !safeName(r.RecordID) {
			return fmt.Errorf("recording %q format %q: not a safe key", r.RecordID, f.Type)
		}
		pre := s.formatPrefix(f.Type, r.RecordID)
		if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(pre + "manifest.json")}); err != nil {
			return fmt.Errorf("delete %s manifest.json: %w", pre, err)
		}
		pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &pre})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("list %s: %w", pre, err)
			}
			if len(page.Contents) == 0 {
				continue
			}
			ids := make([]types.ObjectIdentifier, len(page.Contents))
			for i, o := range page.Contents {
				ids[i] = types.ObjectIdentifier{Key: o.Key}
			}
			out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: &s.bucket, Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
			if err != nil {
				return fmt.Errorf("delete objects under %s: %w", pre, err)
			}
			if len(out.Errors) > 0 {
				e := out.Errors[0]
				return fmt.Errorf("delete %s: %s %s", aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message))
			}
		}
	}
	return nil
}
