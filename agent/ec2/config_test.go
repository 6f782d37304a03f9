package ec2

import (
	"context"
	"path/filepath"
	"testing"
)

// TestLoadConfigOffline: the production configuration loads without
// touching the network; credentials are resolved only when a call needs
// them.
func TestLoadConfigOffline(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	cfg, err := LoadConfig(context.Background(), "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Region != "eu-west-1" || cfg.Credentials == nil || cfg.BaseEndpoint != nil {
		t.Errorf("config: region %q, credentials %v, endpoint %v", cfg.Region, cfg.Credentials, cfg.BaseEndpoint)
	}
}

func TestStaticConfig(t *testing.T) {
	cfg := StaticConfig("http://127.0.0.1:9", "eu-central-1", "AKID", "secret")
	creds, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil || creds.AccessKeyID != "AKID" || creds.SecretAccessKey != "secret" {
		t.Errorf("credentials: %+v, %v", creds, err)
	}
	if cfg.Region != "eu-central-1" || *cfg.BaseEndpoint != "http://127.0.0.1:9" {
		t.Errorf("config: region %q, endpoint %q", cfg.Region, *cfg.BaseEndpoint)
	}
}
