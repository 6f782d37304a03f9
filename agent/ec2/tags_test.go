package ec2

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"testing"

	imdsemu "github.com/bbb-agent/bbb-agent/internal/emulate/imds"
)

// TestInstanceTagsFromEmulatedIMDS reads the bbb-agent:* tags through the
// real SDK client from the IMDSv2 emulation: only the tags with the prefix,
// by their whole key; the instance's other tags are not read at all.
func TestInstanceTagsFromEmulatedIMDS(t *testing.T) {
	emu, m := emulatedIMDS(t) // with the tags aws:autoscaling:groupName and Name
	for k, v := range map[string]string{"bbb-agent:balancer-url": "https://lb.example.com", "bbb-agent:role": "turn", "bbb-agent:tag": "eu,large"} {
		if err := emu.SetTag(k, v); err != nil {
			t.Fatal(err)
		}
	}
	got, err := m.InstanceTags(context.Background(), "bbb-agent:")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"bbb-agent:balancer-url": "https://lb.example.com", "bbb-agent:role": "turn", "bbb-agent:tag": "eu,large"}
	if !maps.Equal(got, want) {
		t.Errorf("InstanceTags: %v, want %v", got, want)
	}
	if n := emu.Requests(imdsemu.MetadataPath + imdsemu.TagsPath + "/Name"); n != 0 {
		t.Errorf("the Name tag was read %d times; only bbb-agent:* tags are", n)
	}

	// An instance whose tags carry none of the prefix.
	if got, err := m.InstanceTags(context.Background(), "other:"); err != nil || len(got) != 0 {
		t.Errorf("InstanceTags(other:): %v, %v; want none", got, err)
	}
}

// TestInstanceTagsNotExposed: an instance without InstanceMetadataTags has
// no tags/instance (404): ErrTagsNotExposed, a kind of ErrNotFound.
func TestInstanceTagsNotExposed(t *testing.T) {
	emu, m := emulatedIMDS(t)
	emu.SetTagsExposed(false)
	_, err := m.InstanceTags(context.Background(), "bbb-agent:")
	if !errors.Is(err, ErrTagsNotExposed) || !errors.Is(err, ErrNotFound) {
		t.Fatalf("InstanceTags with tags not exposed: %v, want ErrTagsNotExposed", err)
	}
}

// TestInstanceTagsNoIMDS: no metadata service is not "tags not exposed".
func TestInstanceTagsNoIMDS(t *testing.T) {
	hs := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(hs.Close)
	m, err := NewMetadata(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.InstanceTags(context.Background(), "bbb-agent:")
	if !errors.Is(err, ErrNoIMDS) || errors.Is(err, ErrTagsNotExposed) {
		t.Fatalf("InstanceTags without IMDS: %v, want ErrNoIMDS", err)
	}
}
