// Package pushtest is a Web Push service for tests and local trials: an
// HTTP server that checks each request's VAPID signature and claims (RFC
// 8292) and decrypts its payload (RFC 8291) with the key of the device it
// made for the endpoint, as a browser's push service and the browser
// would. It shares no code with package push or the library push uses,
// so a test that passes through it checks the wire format, not one
// implementation against itself.
package pushtest

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Push is one request the receiver accepted as well formed.
type Push struct {
	Device   string // the endpoint's last path element
	Payload  []byte // decrypted
	Urgency  string
	Topic    string
	TTL      int
	Audience string // the JWT's aud
	Subject  string // its sub
	Expires  time.Time
	At       time.Time // when the request arrived
	Status   int       // what the receiver answered
}

// Device is a subscription as a browser would hold it: the endpoint the
// push service gave it, and its keys.
type Device struct {
	Endpoint string
	P256dh   []byte // public, uncompressed
	Auth     []byte
	key      *ecdh.PrivateKey
}

// Receiver is the push service.
type Receiver struct {
	URL string // http://127.0.0.1:port

	// Answer, when set, picks the status for the n'th request (from 1) to
	// a device; default 201 Created. Headers it sets go out with it.
	Answer func(n int, device string, h http.Header) int
	// Hang, when set, holds every request until it is closed (or the
	// client gives up).
	Hang chan struct{}

	srv     *httptest.Server
	vapid   []byte // the public key every request must be signed with; nil: any
	mu      sync.Mutex
	devices map[string]*Device
	counts  map[string]int
	pushes  []Push
	bad     []error
	notify  chan struct{}
}

// New starts a receiver on 127.0.0.1 that accepts requests signed with
// vapid (the server's public key, 65 bytes; nil accepts any key).
func New(vapid []byte) *Receiver {
	r := &Receiver{vapid: vapid, devices: map[string]*Device{}, counts: map[string]int{}, notify: make(chan struct{})}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	r.URL = r.srv.URL
	return r
}

// Close stops the receiver.
func (r *Receiver) Close() {
	r.srv.CloseClientConnections()
	r.srv.Close()
}

// Device makes a subscription whose endpoint is this receiver's.
func (r *Receiver) Device(name string) *Device {
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	d := &Device{Endpoint: r.URL + "/push/" + name, P256dh: k.PublicKey().Bytes(), Auth: make([]byte, 16), key: k}
	rand.Read(d.Auth)
	r.mu.Lock()
	r.devices[name] = d
	r.mu.Unlock()
	return d
}

// Pushes returns what was received so far.
func (r *Receiver) Pushes() []Push {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Push(nil), r.pushes...)
}

// Bad returns the requests refused as malformed, and why.
func (r *Receiver) Bad() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.bad...)
}

// Wait returns once n pushes arrived, or an error after timeout.
func (r *Receiver) Wait(n int, timeout time.Duration) ([]Push, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		got, ch := append([]Push(nil), r.pushes...), r.notify
		bad := len(r.bad)
		r.mu.Unlock()
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-ch:
		case <-deadline.C:
			return got, fmt.Errorf("pushtest: %d of %d pushes after %v (%d refused as malformed)", len(got), n, timeout, bad)
		}
	}
}

func (r *Receiver) record(p *Push, err error) {
	r.mu.Lock()
	if err != nil {
		r.bad = append(r.bad, err)
	} else {
		r.pushes = append(r.pushes, *p)
	}
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	if r.Hang != nil {
		select {
		case <-r.Hang:
		case <-req.Context().Done():
			return
		}
	}
	p, err := r.check(req)
	if err != nil {
		r.record(nil, err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.At = at
	r.mu.Lock()
	r.counts[p.Device]++
	n := r.counts[p.Device]
	r.mu.Unlock()
	p.Status = http.StatusCreated
	if r.Answer != nil {
		p.Status = r.Answer(n, p.Device, w.Header())
	}
	r.record(p, nil)
	w.WriteHeader(p.Status)
}

// check verifies one request as a push service and its user agent would.
func (r *Receiver) check(req *http.Request) (*Push, error) {
	if req.Method != http.MethodPost {
		return nil, fmt.Errorf("method %s", req.Method)
	}
	name, ok := strings.CutPrefix(req.URL.Path, "/push/")
	r.mu.Lock()
	d := r.devices[name]
	r.mu.Unlock()
	if !ok || d == nil {
		return nil, fmt.Errorf("no device at %s", req.URL.Path)
	}
	p := &Push{Device: name, Urgency: req.Header.Get("Urgency"), Topic: req.Header.Get("Topic")}
	ttl, err := strconv.Atoi(req.Header.Get("TTL"))
	if err != nil {
		return nil, fmt.Errorf("TTL header %q", req.Header.Get("TTL")) // RFC 8030 5.2: required
	}
	p.TTL = ttl
	if err := r.checkVAPID(req, p); err != nil {
		return nil, err
	}
	if ce := req.Header.Get("Content-Encoding"); ce != "aes128gcm" {
		return nil, fmt.Errorf("Content-Encoding %q", ce)
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 4097))
	if err != nil {
		return nil, err
	}
	if len(body) > 4096 {
		return nil, errors.New("body over 4096 bytes (RFC 8291 4)")
	}
	if p.Payload, err = Decrypt(d, body); err != nil {
		return nil, err
	}
	return p, nil
}

// checkVAPID verifies "Authorization: vapid t=<JWT>, k=<key>" (RFC 8292
// 3): the key is the expected one, the ES256 signature holds, aud is the
// endpoint's origin, exp is in the future and within 24 hours, sub is a
// mailto: or https: URL.
func (r *Receiver) checkVAPID(req *http.Request, p *Push) error {
	auth, ok := strings.CutPrefix(req.Header.Get("Authorization"), "vapid ")
	if !ok {
		return fmt.Errorf("header Authorization %q is not vapid", req.Header.Get("Authorization"))
	}
	var tok, key string
	for _, part := range strings.Split(auth, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			tok = v
		case "k":
			key = v
		}
	}
	pub, err := base64.RawURLEncoding.DecodeString(key)
	if err != nil {
		return fmt.Errorf("vapid k: %w", err)
	}
	if r.vapid != nil && !bytes.Equal(pub, r.vapid) {
		return errors.New("vapid k is not the server's public key")
	}
	ek, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pub)
	if err != nil {
		return fmt.Errorf("vapid k: %w", err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return errors.New("vapid t is not a JWS")
	}
	var hdr struct{ Alg, Typ string }
	if err := decodePart(parts[0], &hdr); err != nil || hdr.Alg != "ES256" {
		return fmt.Errorf("JWT header alg %q (%v)", hdr.Alg, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return fmt.Errorf("JWT signature of %d bytes (%v)", len(sig), err)
	}
	h := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(ek, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return errors.New("JWT signature does not verify with the VAPID key")
	}
	var claims struct {
		Aud string `json:"aud"`
		Exp int64  `json:"exp"`
		Sub string `json:"sub"`
	}
	if err := decodePart(parts[1], &claims); err != nil {
		return fmt.Errorf("JWT claims: %w", err)
	}
	if want := "http://" + req.Host; claims.Aud != want {
		return fmt.Errorf("JWT aud %q, want %q", claims.Aud, want)
	}
	exp := time.Unix(claims.Exp, 0)
	if now := time.Now(); !exp.After(now) || exp.After(now.Add(24*time.Hour)) {
		return fmt.Errorf("JWT exp %v not within the next 24 hours", exp)
	}
	if !strings.HasPrefix(claims.Sub, "mailto:") && !strings.HasPrefix(claims.Sub, "https:") {
		return fmt.Errorf("JWT sub %q is neither a mailto nor an https URL", claims.Sub)
	}
	p.Audience, p.Subject, p.Expires = claims.Aud, claims.Sub, exp
	return nil
}

func decodePart(s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// Decrypt opens an aes128gcm body (RFC 8188) for d, as its user agent
// would (RFC 8291 3.4): the header's key id is the application server's
// one-time public key.
func Decrypt(d *Device, body []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, errors.New("aes128gcm header truncated")
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if idlen != 65 || len(body) < 21+idlen+17 {
		return nil, fmt.Errorf("aes128gcm key id of %d bytes", idlen)
	}
	asPub, ct := body[21:21+idlen], body[21+idlen:]
	if rs < 18 || uint32(len(ct)) > rs {
		return nil, fmt.Errorf("record of %d bytes with rs %d: one record expected", len(ct), rs)
	}
	as, err := ecdh.P256().NewPublicKey(asPub)
	if err != nil {
		return nil, fmt.Errorf("application server key: %w", err)
	}
	shared, err := d.key.ECDH(as)
	if err != nil {
		return nil, err
	}
	prkKey, err := hkdf.Extract(sha256.New, shared, d.Auth)
	if err != nil {
		return nil, err
	}
	ikm, err := hkdf.Expand(sha256.New, prkKey, "WebPush: info\x00"+string(d.P256dh)+string(asPub), 32)
	if err != nil {
		return nil, err
	}
	prk, err := hkdf.Extract(sha256.New, ikm, salt)
	if err != nil {
		return nil, err
	}
	cek, err := hkdf.Expand(sha256.New, prk, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Expand(sha256.New, prk, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	pt, err := gcm.Open(nil, nonce, ct, nil)
	if err != nil {
		return nil, fmt.Errorf("aes128gcm: %w", err)
	}
	// The last record ends with 0x02 then zero padding (RFC 8188 2).
	end := len(pt) - 1
	for end >= 0 && pt[end] == 0 {
		end--
	}
	if end < 0 || pt[end] != 2 {
		return nil, errors.New("aes128gcm: no last-record delimiter")
	}
	return pt[:end], nil
}
