package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// certFiles serves the certificate of --tls-cert/--tls-key and reads the
// files again when either one's modification time changes (certbot renewed
// them), on the next TLS handshake. A pair that does not load keeps the
// previous certificate in use, with a warning once per change.
type certFiles struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	certMod time.Time
	keyMod  time.Time
	failed  [2]time.Time // the modification times of a pair that did not load
}

// newCertFiles loads the pair once: a pair that does not load at start is
// a configuration error.
func newCertFiles(certFile, keyFile string, log *slog.Logger) (*certFiles, error) {
	c := &certFiles{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certFiles) modTimes() (time.Time, time.Time, error) {
	ci, err := os.Stat(c.certFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("--tls-cert: %w", err)
	}
	ki, err := os.Stat(c.keyFile)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("--tls-key: %w", err)
	}
	return ci.ModTime(), ki.ModTime(), nil
}

func (c *certFiles) reload() error {
	certMod, keyMod, err := c.modTimes()
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("--tls-cert %s / --tls-key %s: %w (give a PEM certificate chain and its PEM private key)", c.certFile, c.keyFile, err)
	}
	c.cert, c.certMod, c.keyMod = &cert, certMod, keyMod
	return nil
}

// GetCertificate is tls.Config.GetCertificate.
func (c *certFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	certMod, keyMod, err := c.modTimes()
	if err == nil && (!certMod.Equal(c.certMod) || !keyMod.Equal(c.keyMod)) && c.failed != [2]time.Time{certMod, keyMod} {
		if err := c.reload(); err != nil {
			// certbot writes the two files one after the other: the next
			// handshake after the second write tries again.
			c.failed = [2]time.Time{certMod, keyMod}
			c.log.Warn("the changed TLS certificate does not load; still serving the previous one", "err", err)
		} else {
			c.failed = [2]time.Time{}
			c.log.Info("TLS certificate reloaded", "cert", c.certFile, "not_after", c.cert.Leaf.NotAfter)
		}
	}
	return c.cert, nil
}

// tlsSetup is the TLS side of serve: the tls.Config of the public
// listener, and for ACME the handler of HTTP-01 challenges (nil otherwise).
type tlsSetup struct {
	config *tls.Config
	http01 http.Handler
}

// newTLS builds the TLS configuration from the flags; a nil result means
// plain HTTP.
func newTLS(certFile, keyFile string, domains []string, email, ca, cache string, log *slog.Logger) (*tlsSetup, error) {
	switch {
	case (certFile == "") != (keyFile == ""):
		return nil, errors.New("--tls-cert and --tls-key go together: give both, or neither")
	case certFile != "" && len(domains) > 0:
		return nil, errors.New("--tls-cert and --acme-domain exclude each other: give certificate files or let ACME get them")
	case len(domains) == 0 && (email != "" || ca != "" || cache != ""):
		return nil, errors.New("--acme-email, --acme-ca and --acme-cache need --acme-domain (the names to get certificates for)")
	case certFile != "":
		files, err := newCertFiles(certFile, keyFile, log)
		if err != nil {
			return nil, err
		}
		return &tlsSetup{config: &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: files.GetCertificate}}, nil
	case len(domains) > 0:
		if cache == "" {
			return nil, errors.New("--acme-domain needs --acme-cache DIR: the account key and certificates must survive restarts (the CA limits issuance)")
		}
		m := &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			HostPolicy: autocert.HostWhitelist(domains...),
			Cache:      autocert.DirCache(cache),
			Email:      email,
		}
		if ca != "" {
			m.Client = &acme.Client{DirectoryURL: ca}
		}
		cfg := m.TLSConfig() // answers TLS-ALPN-01 challenges (acme-tls/1) on the public port
		cfg.MinVersion = tls.VersionTLS12
		return &tlsSetup{config: cfg, http01: m.HTTPHandler(nil)}, nil
	}
	return nil, nil
}
