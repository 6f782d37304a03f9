package awsemu

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
)

// The static credentials Config signs with; the emulations accept any.
const (
	AccessKeyID     = "AKIDEMULATION"
	SecretAccessKey = "emulation-secret"
)

// NoBackoff is a retry backoff of zero, for retryers a test builds itself.
var NoBackoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })

// Config is an AWS configuration for a real SDK client (NewFromConfig) that
// reaches the emulation at endpoint in region, with static credentials and
// the SDK's standard retryer, whose backoff is NoBackoff.
func Config(endpoint, region string) aws.Config {
	return aws.Config{
		Region:       region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKeyID, SecretAccessKey, ""),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.Backoff = NoBackoff })
		},
	}
}

// Serve serves the emulation on loopback until the test ends and returns
// the Config that reaches it, and its URL.
func Serve(t testing.TB, emulation http.Handler, region string) (aws.Config, string) {
	t.Helper()
	hs := httptest.NewServer(emulation)
	t.Cleanup(hs.Close)
	return Config(hs.URL, region), hs.URL
}
