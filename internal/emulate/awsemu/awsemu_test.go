package awsemu

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/route53"
)

// TestServe: a real SDK client built from the Config reaches the handler,
// signed with the static credentials for the region.
func TestServe(t *testing.T) {
	var auth string
	cfg, url := Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		w.WriteHeader(http.StatusServiceUnavailable)
	}), "eu-central-1")
	if *cfg.BaseEndpoint != url || cfg.Region != "eu-central-1" {
		t.Fatalf("config: endpoint %q region %q, want %q eu-central-1", *cfg.BaseEndpoint, cfg.Region, url)
	}
	_, err := route53.NewFromConfig(cfg).ListHostedZones(context.Background(), &route53.ListHostedZonesInput{})
	if err == nil {
		t.Fatal("no error from a handler that answers 503")
	}
	if !strings.Contains(auth, "Credential="+AccessKeyID+"/") || !strings.Contains(auth, "/eu-central-1/route53/") {
		t.Errorf("Authorization %q: want the static credentials and the region", auth)
	}
}
