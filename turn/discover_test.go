package turn

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
)

type fakeResolver struct {
	srv   map[string][]*net.SRV // "_service._proto.name"
	hosts map[string][]string
}

func (f fakeResolver) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	if s, ok := f.srv["_"+service+"._"+proto+"."+name]; ok {
		return "", s, nil
	}
	return "", nil, errors.New("no such host")
}

func (f fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if a, ok := f.hosts[host]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

func TestDiscover(t *testing.T) {
	r := fakeResolver{
		srv: map[string][]*net.SRV{
			"_turn._udp.turn.example.com":  {{Target: "turn1.example.com.", Port: 3478}, {Target: "turn2.example.com.", Port: 3478}},
			"_turns._tcp.turn.example.com": {{Target: "turn1.example.com.", Port: 443}},
			"_turn._udp.none.example.com":  {{Target: ".", Port: 0}},
		},
		hosts: map[string][]string{"rr.example.com": {"192.0.2.1", "192.0.2.2"}, "none.example.com": {"192.0.2.3"}},
	}
	tests := []struct {
		name string
		want []string
		err  bool
	}{
		{"turn.example.com", []string{"turn:turn1.example.com:3478", "turn:turn2.example.com:3478", "turns:turn1.example.com:443?transport=tcp"}, false},
		{"rr.example.com.", []string{"turn:rr.example.com:3478"}, false},
		{"none.example.com", []string{"turn:none.example.com:3478"}, false},
		{"missing.example.com", nil, true},
		{"", nil, true},
	}
	for _, tt := range tests {
		got, err := Discover(context.Background(), r, tt.name)
		if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("Discover(%q) = %v, %v; want %v (error %v)", tt.name, got, err, tt.want, tt.err)
		}
	}
}
