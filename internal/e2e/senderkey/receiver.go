package senderkey

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/chatd/chatd/internal/e2e/internal/wire"
)

// Config bounds what one sender can make a receiver compute and keep.
type Config struct {
	// MaxForwardJump is the most message keys one message may skip.
	MaxForwardJump uint32
	// MaxSkipped is the most skipped keys kept per chain, oldest dropped.
	MaxSkipped uint32
	// MaxChains is how many of a sender's chains are kept, so messages
	// sent just before a rotation still decrypt after it.
	MaxChains uint32
}

// DefaultConfig is what a zero Config means.
var DefaultConfig = Config{MaxForwardJump: 2000, MaxSkipped: 2000, MaxChains: 5}

func (c Config) withDefaults() Config {
	if c.MaxForwardJump == 0 {
		c.MaxForwardJump = DefaultConfig.MaxForwardJump
	}
	if c.MaxSkipped == 0 {
		c.MaxSkipped = DefaultConfig.MaxSkipped
	}
	if c.MaxChains == 0 {
		c.MaxChains = DefaultConfig.MaxChains
	}
	return c
}

type skippedKey struct {
	iteration uint32
	seed      [32]byte
}

type chain struct {
	id        uint32
	iteration uint32 // next expected
	key       [32]byte
	signing   [ed25519.PublicKeySize]byte
	skipped   []skippedKey // oldest first
}

// Receiver reads one sender's messages in one group. Like the ratchet, a
// failed Decrypt leaves it unchanged.
type Receiver struct {
	cfg            Config
	distributionID [DistributionIDSize]byte
	chains         []chain // newest first
}

// NewReceiver starts reading the sender described by d.
func NewReceiver(d *Distribution, cfg Config) *Receiver {
	r := &Receiver{cfg: cfg.withDefaults(), distributionID: d.DistributionID}
	r.chains = []chain{chainFrom(d)}
	return r
}

func chainFrom(d *Distribution) chain {
	return chain{id: d.ChainID, iteration: d.Iteration, key: d.ChainKey, signing: d.SigningKey}
}

// Process adds a new chain (after the sender rotated). A distribution for a
// chain already known is ignored if it matches, since it can only move the
// receiver backwards; one that claims a known chain ID with another signing
// key is refused.
func (r *Receiver) Process(d *Distribution) error {
	if d.DistributionID != r.distributionID {
		return fmt.Errorf("%w: distribution for another group or sender", ErrMalformed)
	}
	for _, c := range r.chains {
		if c.id == d.ChainID {
			if c.signing != d.SigningKey {
				return fmt.Errorf("%w: chain %d redistributed with another signing key", ErrBadSignature, d.ChainID)
			}
			return nil
		}
	}
	r.chains = slices.Insert(r.chains, 0, chainFrom(d))
	if len(r.chains) > int(r.cfg.MaxChains) {
		r.chains = r.chains[:r.cfg.MaxChains]
	}
	return nil
}

// Decrypt checks the signature, then decrypts. Nothing changes unless both
// succeed.
func (r *Receiver) Decrypt(msg []byte) ([]byte, error) {
	h, signed, ct, sig, err := parse(msg)
	if err != nil {
		return nil, err
	}
	if h.distributionID != r.distributionID {
		return nil, ErrNoState
	}
	if h.iteration == math.MaxUint32 {
		// Encrypt never uses the last iteration; accepting it would wrap
		// the chain's counter to 0.
		return nil, ErrCounter
	}
	ci := slices.IndexFunc(r.chains, func(c chain) bool { return c.id == h.chainID })
	if ci < 0 {
		return nil, ErrNoState
	}
	c := &r.chains[ci]
	// Verify before deriving keys, so a forger cannot make us walk the
	// chain.
	if !ed25519.Verify(c.signing[:], signed, sig) {
		return nil, ErrBadSignature
	}
	ad := signed[:headerSize]

	if h.iteration < c.iteration {
		i := slices.IndexFunc(c.skipped, func(k skippedKey) bool { return k.iteration == h.iteration })
		if i < 0 {
			return nil, ErrOldMessage
		}
		pt, err := open(&c.skipped[i].seed, ct, ad)
		if err != nil {
			return nil, err
		}
		c.skipped = slices.Delete(c.skipped, i, i+1)
		return pt, nil
	}
	if h.iteration-c.iteration > r.cfg.MaxForwardJump {
		return nil, fmt.Errorf("%w: %d > %d", ErrTooFarAhead, h.iteration-c.iteration, r.cfg.MaxForwardJump)
	}
	ck := c.key
	var skip []skippedKey
	for n := c.iteration; n < h.iteration; n++ {
		var seed [32]byte
		ck, seed = kdfCK(&ck)
		skip = append(skip, skippedKey{n, seed})
	}
	next, seed := kdfCK(&ck)
	pt, err := open(&seed, ct, ad)
	if err != nil {
		return nil, err
	}
	c.key, c.iteration = next, h.iteration+1
	c.skipped = append(c.skipped, skip...)
	if over := len(c.skipped) - int(r.cfg.MaxSkipped); over > 0 {
		c.skipped = slices.Delete(c.skipped, 0, over)
	}
	return pt, nil
}

// Marshal encodes the receiver, secrets included (ENVELOPE.md, "Sender key
// state").
func (r *Receiver) Marshal() []byte {
	out := []byte{version}
	out = append(out, r.distributionID[:]...)
	out = binary.BigEndian.AppendUint32(out, r.cfg.MaxForwardJump)
	out = binary.BigEndian.AppendUint32(out, r.cfg.MaxSkipped)
	out = binary.BigEndian.AppendUint32(out, r.cfg.MaxChains)
	out = binary.BigEndian.AppendUint32(out, uint32(len(r.chains)))
	for _, c := range r.chains {
		out = binary.BigEndian.AppendUint32(out, c.id)
		out = binary.BigEndian.AppendUint32(out, c.iteration)
		out = append(out, c.key[:]...)
		out = append(out, c.signing[:]...)
		out = binary.BigEndian.AppendUint32(out, uint32(len(c.skipped)))
		for _, k := range c.skipped {
			out = binary.BigEndian.AppendUint32(out, k.iteration)
			out = append(out, k.seed[:]...)
		}
	}
	return out
}

// UnmarshalReceiver decodes a Receiver written by Marshal.
func UnmarshalReceiver(data []byte) (*Receiver, error) {
	rd := wire.NewReader(data)
	if v := rd.U8(); v != version {
		rd.Failf("%w: receiver version %d", ErrMalformed, v)
	}
	r := &Receiver{}
	rd.Fixed(r.distributionID[:])
	r.cfg = Config{MaxForwardJump: rd.U32(), MaxSkipped: rd.U32(), MaxChains: rd.U32()}
	n := rd.U32()
	if uint64(n)*76 > uint64(rd.Len()) {
		rd.Failf("%w: %d chains", ErrMalformed, n)
		n = 0
	}
	for range n {
		var c chain
		c.id, c.iteration = rd.U32(), rd.U32()
		rd.Fixed(c.key[:])
		rd.Fixed(c.signing[:])
		k := rd.U32()
		if uint64(k)*36 > uint64(rd.Len()) {
			rd.Failf("%w: %d skipped keys", ErrMalformed, k)
			break
		}
		c.skipped = make([]skippedKey, k)
		for i := range c.skipped {
			c.skipped[i].iteration = rd.U32()
			rd.Fixed(c.skipped[i].seed[:])
		}
		r.chains = append(r.chains, c)
	}
	if err := rd.Finish(); err != nil {
		return nil, fmt.Errorf("senderkey: receiver: %w", err)
	}
	if r.cfg.MaxForwardJump == 0 || r.cfg.MaxSkipped == 0 || r.cfg.MaxChains == 0 || len(r.chains) == 0 {
		return nil, fmt.Errorf("%w: receiver without limits or chains", ErrMalformed)
	}
	return r, nil
}
