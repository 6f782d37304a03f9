package ec2

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// LoadConfig returns the AWS configuration of a production agent: the SDK's
// default chain (environment, shared files, then the instance role through
// IMDS) in region, which Metadata.Region supplies. Credentials are fetched
// lazily, at the first call that needs them.
func LoadConfig(ctx context.Context, region string) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
	if err != nil {
		return aws.Config{}, fmt.Errorf("ec2: load AWS configuration: %w", err)
	}
	return cfg, nil
}

// StaticConfig returns an AWS configuration that sends every call to
// endpoint with fixed credentials. It is a deliberate test seam: only tests
// call it, against the emulations in internal/emulate, which check no
// signature.
func StaticConfig(endpoint, region, accessKeyID, secretAccessKey string) aws.Config {
	return aws.Config{
		Region:       region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(accessKeyID, secretAccessKey, ""),
	}
}
