package web

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProxyConfigValid: deploy/haproxy/chatd-ws.cfg, the TLS proxy README
// tells operators to put in front of the WebSocket port, is a config
// HAProxy accepts (haproxy -c), with its certificate path pointed at a
// throwaway self-signed one. CI installs Debian's haproxy; without it the
// test skips and says so.
func TestProxyConfigValid(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Skip("haproxy not installed (apt-get install haproxy): the proxy config is not checked")
	}
	src, err := os.ReadFile(filepath.Join("..", "deploy", "haproxy", "chatd-ws.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	const certPath = "/etc/haproxy/certs/chatd.pem"
	if !strings.Contains(string(src), certPath) {
		t.Fatalf("the config no longer names %s: update this test", certPath)
	}
	dir := t.TempDir()
	cert := filepath.Join(dir, "chatd.pem")
	if err := os.WriteFile(cert, selfSigned(t), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "chatd-ws.cfg")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(string(src), certPath, cert)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}

// selfSigned returns a PEM certificate for 127.0.0.1 followed by its key,
// the one file HAProxy's crt takes.
func selfSigned(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})...)
}
