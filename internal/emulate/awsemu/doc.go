// Package awsemu points a real aws-sdk-go-v2 client at one of the AWS
// emulations beside it (internal/emulate/route53, internal/emulate/autoscaling):
// the one place tests get an aws.Config with static credentials, a region,
// the emulation's URL as BaseEndpoint and a retryer that retries without
// waiting, so throttling and retries cost a test no time.
package awsemu
