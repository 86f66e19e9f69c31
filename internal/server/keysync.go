package server

import (
	"context"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/chatd/chatd/internal/secure"
	"go.uber.org/zap"
	"golang.org/x/crypto/chacha20poly1305"
)

// Key changes across a cluster. Every node must serve the same key set,
// or a client that pinned the new key would be refused by half of them.
// After `chatd key rotate|retire|reload` on one node, that node sends the
// set it now holds to every other node of the cluster (a "keyset" request each, so
// the command can say which nodes took it), and each adopts it
// (secure.Adopt): with key files shared between the nodes (one path on
// shared storage) a node finds the set already on disk and only reads it
// again; with a copy of the files on each node (README: "copy the file")
// it writes its own copy to match. Either way, once the command returns
// with every node listed as done, every node answers with the new set.
//
// The set carries private keys, and route traffic is not encrypted: it
// is sealed with XChaCha20-Poly1305 under a key derived from the cluster
// secret (which the routes' authentication already requires to be
// secret, and at least 16 bytes). A node refuses a set that does not
// follow from its own (a key it never had, or one behind it): it keeps
// its keys and the command reports the refusal.
//
// A node down at the time misses the change; once it is back, `chatd key
// reload` on any node that has the change sends it again to all.

// keySyncTimeout bounds one node's adoption (a few file writes and syncs).
const keySyncTimeout = 10 * time.Second

type keySyncRequest struct {
	Op     string `json:"op"`     // rotate, retire or reload: what the operator ran, for the log
	From   string `json:"from"`   // the node it ran on
	Sealed []byte `json:"sealed"` // nonce | sealed secure.MarshalKeys
}

type keySyncReply struct {
	Current string `json:"current,omitempty"`
	Next    string `json:"next,omitempty"`
	Err     string `json:"err,omitempty"`
}

// keySealer is the AEAD of key sets, keyed from the cluster secret.
func (s *Server) keySealer() (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, []byte(s.cfg.Cluster.Secret), nil, "chatd key sync v1", chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	return chacha20poly1305.NewX(key)
}

var keySyncAD = []byte("chatd key set")

func (s *Server) sealKeys(k *secure.Keys) ([]byte, error) {
	aead, err := s.keySealer()
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, secure.MarshalKeys(k), keySyncAD), nil
}

func (s *Server) openKeys(sealed []byte) (*secure.Keys, error) {
	aead, err := s.keySealer()
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize() {
		return nil, errors.New("server: key set too short")
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], keySyncAD)
	if err != nil {
		return nil, fmt.Errorf("server: key set not sealed with this cluster's secret: %w", err)
	}
	return secure.UnmarshalKeys(plain)
}

// spreadKeys sends k to every other node of the cluster and reports, by
// node, what each did ("ok", or why not). Nil on a single node.
func (s *Server) spreadKeys(op string, k *secure.Keys) map[string]string {
	if s.cl == nil {
		return nil
	}
	var nodes []string
	if m, ok := s.cl.node.Shards(); ok {
		nodes = append(nodes, m.Nodes...)
	}
	for _, n := range s.cl.node.LiveNodes() {
		if !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	out := map[string]string{}
	sealed, err := s.sealKeys(k)
	if err != nil {
		for _, n := range nodes {
			out[n] = "not sent: " + err.Error()
		}
		return out
	}
	req := mustJSON(keySyncRequest{Op: op, From: s.cl.node.Name(), Sealed: sealed})
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n == s.cl.node.Name() {
			continue
		}
		wg.Go(func() {
			res := "ok"
			ctx, cancel := context.WithTimeout(s.baseCtx, keySyncTimeout)
			defer cancel()
			data, err := s.cl.node.Request(ctx, n, "keyset", req)
			var r keySyncReply
			switch {
			case err != nil: // asked even if it reads as dead: liveness lags a restart
				res = "no answer (down?): run `chatd key reload` on a node with these keys once it is back (" + err.Error() + ")"
			case json.Unmarshal(data, &r) != nil:
				res = "bad answer"
			case r.Err != "":
				res = "refused: " + r.Err
			}
			mu.Lock()
			out[n] = res
			mu.Unlock()
		})
	}
	wg.Wait()
	for n, res := range out {
		if res != "ok" {
			s.log.Warn("server key set not taken by a node", zap.String("node", n), zap.String("op", op), zap.String("why", res))
		}
	}
	return out
}

// serveKeySet adopts the key set another node sends (off the handler's
// goroutine: it writes and syncs files).
func (s *Server) serveKeySet(data []byte, respond func([]byte)) {
	s.keySyncs.start(func() {
		var req keySyncRequest
		var r keySyncReply
		k, err := func() (*secure.Keys, error) {
			if err := json.Unmarshal(data, &req); err != nil {
				return nil, err
			}
			want, err := s.openKeys(req.Sealed)
			if err != nil {
				return nil, err
			}
			s.keyMu.Lock()
			defer s.keyMu.Unlock()
			k, err := secure.Adopt(s.keyPath, want)
			if err != nil {
				return nil, err
			}
			s.useKeys(k)
			return k, nil
		}()
		if err != nil {
			r.Err = err.Error()
			s.log.Warn("server key set from another node refused", zap.String("from", req.From), zap.String("op", req.Op), zap.Error(err))
		} else {
			rep := ReportKeys(k)
			r.Current, r.Next = rep.Current, rep.Next
			s.log.Info("server key set adopted from another node", zap.String("from", req.From), zap.String("op", req.Op))
		}
		respond(mustJSON(r))
	})
}
