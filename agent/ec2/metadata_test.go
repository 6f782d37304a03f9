package ec2

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	imdsemu "github.com/bbb-agent/bbb-agent/internal/emulate/imds"
)

// emulatedIMDS starts the IMDSv2 emulation on loopback with a typical
// instance's items and returns it with a Metadata reading it.
func emulatedIMDS(t *testing.T) (*imdsemu.Server, *Metadata) {
	t.Helper()
	emu := imdsemu.New(nil)
	for path, value := range map[string]string{
		"instance-id":                        "i-0123456789abcdef0",
		"public-ipv4":                        "203.0.113.10",
		"local-ipv4":                         "10.0.1.20",
		"placement/region":                   "eu-central-1",
		"autoscaling/target-lifecycle-state": "InService",
		"mac":                                "0a:1b:2c:3d:4e:5f",
		"network/interfaces/macs/0a:1b:2c:3d:4e:5f/ipv6s": "2001:db8::10\n2001:db8::11",
		"tags/instance/aws:autoscaling:groupName":         "bbb-media",
		"tags/instance/Name":                              "bbb-media-node",
	} {
		emu.Set(path, value)
	}
	hs := httptest.NewServer(emu)
	t.Cleanup(hs.Close)
	m, err := NewMetadata(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	return emu, m
}

// TestMetadataItemsFromEmulatedIMDS reads every item through the real SDK
// client against the IMDSv2 emulation, which refuses requests without a
// token: the client fetches one, once, and reuses it.
func TestMetadataItemsFromEmulatedIMDS(t *testing.T) {
	emu, m := emulatedIMDS(t)
	ctx := context.Background()

	str := func(name string, f func(context.Context) (string, error), want string) {
		t.Helper()
		if got, err := f(ctx); err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
	addr := func(name string, f func(context.Context) (netip.Addr, error), want string) {
		t.Helper()
		if got, err := f(ctx); err != nil || got != netip.MustParseAddr(want) {
			t.Errorf("%s: %v, %v; want %s", name, got, err, want)
		}
	}
	str("InstanceID", m.InstanceID, "i-0123456789abcdef0")
	str("Region", m.Region, "eu-central-1")
	str("LifecycleState", m.LifecycleState, StateInService)
	str("AutoScalingGroup", m.AutoScalingGroup, "bbb-media")
	addr("PublicIPv4", m.PublicIPv4, "203.0.113.10")
	addr("LocalIPv4", m.LocalIPv4, "10.0.1.20")
	addr("IPv6", m.IPv6, "2001:db8::10")
	if !m.Available(ctx) {
		t.Error("Available: false against the emulation")
	}

	if got := emu.Requests(imdsemu.TokenPath); got != 1 {
		t.Errorf("token requests: %d, want 1 (fetched once, then reused)", got)
	}
	if got := emu.Requests(imdsemu.MetadataPath + "instance-id"); got != 2 {
		t.Errorf("instance-id requests: %d, want 2", got)
	}
}

func TestMetadataMissingItemEmulatedIMDS(t *testing.T) {
	emu, m := emulatedIMDS(t)
	ctx := context.Background()
	emu.Delete("public-ipv4")

	_, err := m.PublicIPv4(ctx)
	var me *MetadataError
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &me) || me.Item != "public-ipv4" || me.Status != http.StatusNotFound {
		t.Fatalf("PublicIPv4 without the item: %v (%+v)", err, me)
	}
	if msg := err.Error(); !strings.HasPrefix(msg, "ec2 metadata public-ipv4: not in the instance metadata: ") {
		t.Errorf("message: %s", msg)
	}
	if errors.Is(err, ErrNoIMDS) || errors.Is(err, ErrRefused) {
		t.Errorf("a 404 is neither ErrNoIMDS nor ErrRefused: %v", err)
	}

	emu.Delete("network/interfaces/macs/0a:1b:2c:3d:4e:5f/ipv6s")
	if _, err := m.IPv6(ctx); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "/ipv6s") {
		t.Errorf("IPv6 without ipv6s: %v", err)
	}

	emu.Set("local-ipv4", "not-an-address")
	if _, err := m.LocalIPv4(ctx); err == nil || !strings.Contains(err.Error(), `unexpected address "not-an-address"`) {
		t.Errorf("LocalIPv4 with garbage: %v", err)
	}
	emu.Set("local-ipv4", "2001:db8::1")
	if _, err := m.LocalIPv4(ctx); err == nil {
		t.Error("LocalIPv4 accepted an IPv6 address")
	}
}

func TestMetadataAutoScalingGroupErrorsEmulatedIMDS(t *testing.T) {
	emu, m := emulatedIMDS(t)
	ctx := context.Background()

	emu.Delete("tags/instance/aws:autoscaling:groupName")
	_, err := m.AutoScalingGroup(ctx)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "not in an Auto Scaling group") {
		t.Errorf("without the group tag: %v", err)
	}

	emu.Delete("tags/instance/Name")
	_, err = m.AutoScalingGroup(ctx)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "InstanceMetadataTags=enabled") {
		t.Errorf("without instance tags in the metadata: %v", err)
	}

	emu.Delete("autoscaling/target-lifecycle-state")
	if _, err := m.LifecycleState(ctx); !errors.Is(err, ErrNotFound) {
		t.Errorf("LifecycleState outside a group: %v", err)
	}
}

// TestMetadataTokenRenewedEmulatedIMDS: a token the service stops accepting
// (401) is replaced by a fresh one and the lookup succeeds.
func TestMetadataTokenRenewedEmulatedIMDS(t *testing.T) {
	emu, m := emulatedIMDS(t)
	ctx := context.Background()
	if _, err := m.InstanceID(ctx); err != nil {
		t.Fatal(err)
	}
	emu.RevokeTokens()
	if got, err := m.Region(ctx); err != nil || got != "eu-central-1" {
		t.Fatalf("Region after the token was revoked: %q, %v", got, err)
	}
	if got := emu.Requests(imdsemu.TokenPath); got != 2 {
		t.Errorf("token requests: %d, want 2", got)
	}
}

func TestMetadataTurnedOffEmulatedIMDS(t *testing.T) {
	emu, m := emulatedIMDS(t)
	emu.SetDisabled(true)
	_, err := m.InstanceID(context.Background())
	var me *MetadataError
	if !errors.Is(err, ErrRefused) || !errors.As(err, &me) || me.Status != http.StatusForbidden {
		t.Fatalf("IMDS turned off: %v", err)
	}
	if emu.Requests(imdsemu.MetadataPath+"instance-id") != 0 {
		t.Error("a GET went out without a token")
	}
}

// TestMetadataAbsent: nothing listens at the endpoint, as on a host outside
// EC2. Available says so and the error names the cause.
func TestMetadataAbsent(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String()
	l.Close()

	m, err := NewMetadata(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if m.Available(ctx) {
		t.Fatal("Available: true with nothing listening")
	}
	_, err = m.InstanceID(ctx)
	var me *MetadataError
	if !errors.Is(err, ErrNoIMDS) || !errors.As(err, &me) || me.Status != 0 {
		t.Fatalf("InstanceID with nothing listening: %v", err)
	}
	if !strings.Contains(err.Error(), "not on EC2") {
		t.Errorf("message: %s", err)
	}
}

// TestMetadataOtherServer: something answers, but not as IMDSv2 (no token
// endpoint), as another cloud's metadata server may.
func TestMetadataOtherServer(t *testing.T) {
	hs := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(hs.Close)
	m, err := NewMetadata(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.InstanceID(context.Background()); !errors.Is(err, ErrNoIMDS) {
		t.Fatalf("InstanceID from a server without IMDSv2: %v", err)
	}
}

func TestNewMetadataEndpoint(t *testing.T) {
	for _, endpoint := range []string{"169.254.169.254", "ftp://169.254.169.254", "http://", ":"} {
		if _, err := NewMetadata(endpoint); err == nil {
			t.Errorf("NewMetadata(%q): no error", endpoint)
		}
	}
	if _, err := NewMetadata(""); err != nil {
		t.Errorf("NewMetadata(\"\"): %v", err)
	}
}
