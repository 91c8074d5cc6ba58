package lobby

import (
	"crypto/tls"
	"errors"
	"fmt"
)

// tlsConfig loads the certificate and key named by opts.TLSCert and
// opts.TLSKey: nil without them. Served with [net/http.Server.ServeTLS], it
// offers HTTP/2 (ALPN "h2") and HTTP/1.1; the hub keeps streams over TLS
// on net/http's writer.
func (o Options) tlsConfig() (*tls.Config, error) {
	if o.TLSCert == "" && o.TLSKey == "" {
		return nil, nil
	}
	if o.TLSCert == "" || o.TLSKey == "" {
		return nil, errors.New("lobby: TLS needs both a certificate and a key")
	}
	cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("lobby: TLS: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
