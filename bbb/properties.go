package bbb

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// The properties files bbb-web reads, the override first.
const (
	PropertiesOverridePath = "/etc/bigbluebutton/bbb-web.properties"
	PropertiesPackagedPath = "/usr/share/bbb-web/WEB-INF/classes/bigbluebutton.properties"
)

// The keys that hold a node's API secret and server URL.
const (
	PropSecret    = "securitySalt"
	PropServerURL = "bigbluebutton.web.serverURL"
)

// ServerConfig is what a node's own files say about its API.
type ServerConfig struct {
	ServerURL string
	Secret    string
	// Sources names, per key, the file the value came from (for status and errors).
	Sources map[string]string
}

// ReadServerConfig reads the server URL and secret from bbb-web's properties
// files below root ("" or "/" for the live system; tests pass a testdata
// tree), with BBB's precedence: the override file first, then the packaged one.
func ReadServerConfig(root string) (ServerConfig, error) {
	paths := []string{filepath.Join(root, PropertiesOverridePath), filepath.Join(root, PropertiesPackagedPath)}
	props, sources, err := ReadProperties(paths...)
	if err != nil {
		return ServerConfig{}, err
	}
	cfg := ServerConfig{ServerURL: props[PropServerURL], Secret: props[PropSecret], Sources: sources}
	if cfg.Secret == "" {
		return cfg, fmt.Errorf("no %s in %s: set it there or give the secret explicitly", PropSecret, strings.Join(paths, " or "))
	}
	if cfg.ServerURL == "" {
		return cfg, fmt.Errorf("no %s in %s: set it there or give the server URL explicitly", PropServerURL, strings.Join(paths, " or "))
	}
	return cfg, nil
}

// ReadProperties reads Java properties files in order of precedence: a key
// from an earlier file wins. Missing files are skipped, but at least one must
// exist; a file that exists but cannot be read is an error. It returns the
// values and, per key, the file it came from.
func ReadProperties(paths ...string) (map[string]string, map[string]string, error) {
	props := map[string]string{}
	sources := map[string]string{}
	found := 0
	for _, p := range paths {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading BBB properties: %w", err)
		}
		found++
		kv, err := ParseProperties(f)
		f.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("reading BBB properties %s: %w", p, err)
		}
		for k, v := range kv {
			if _, ok := props[k]; !ok {
				props[k] = v
				sources[k] = p
			}
		}
	}
	if found == 0 {
		return nil, nil, fmt.Errorf("no BBB properties file found (looked for %s): is bbb-web installed on this host?", strings.Join(paths, ", "))
	}
	return props, sources, nil
}

// ParseProperties parses the Java properties format: key=value, key: value or
// key value; # and ! comments; backslash line continuations and escapes.
func ParseProperties(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	var logical strings.Builder
	for sc.Scan() {
		line := strings.TrimLeft(sc.Text(), " \t\f")
		if logical.Len() == 0 && (line == "" || line[0] == '#' || line[0] == '!') {
			continue
		}
		if continues(line) {
			logical.WriteString(line[:len(line)-1])
			continue
		}
		logical.WriteString(line)
		k, v := splitProperty(logical.String())
		logical.Reset()
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if logical.Len() > 0 {
		k, v := splitProperty(logical.String())
		out[k] = v
	}
	return out, nil
}

// continues reports whether a line ends in an odd number of backslashes.
func continues(line string) bool {
	n := 0
	for i := len(line) - 1; i >= 0 && line[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

func splitProperty(s string) (string, string) {
	i := 0
	for i < len(s) {
		c := s[i]
		if c == '\\' {
			i += 2
			continue
		}
		if c == '=' || c == ':' || c == ' ' || c == '\t' || c == '\f' {
			break
		}
		i++
	}
	if i > len(s) {
		i = len(s)
	}
	key := s[:i]
	rest := strings.TrimLeft(s[i:], " \t\f")
	if rest != "" && (rest[0] == '=' || rest[0] == ':') {
		rest = strings.TrimLeft(rest[1:], " \t\f")
	}
	return unescapeProperty(key), strings.TrimRight(unescapeProperty(rest), " \t")
}

func unescapeProperty(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 'f':
			b.WriteByte('\f')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
