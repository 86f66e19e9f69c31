package ratchet

import (
	"crypto/ecdh"
	"encoding/binary"
	"fmt"

	"github.com/chatd/chatd/internal/e2e/internal/wire"
)

// The first byte of a marshalled State: version 1 is a plain session,
// version 2 a header-encrypted one (version 1's fields, then the header
// keys). Plain sessions still write version 1, so older states and their
// bytes stay as they were.
const (
	stateVersion   = 1
	stateVersionHE = 2
)

const (
	flagDHr = 1 << iota
	flagCKs
	flagCKr
)

const (
	flagHKs = 1 << iota
	flagHKr
)

// Marshal encodes the whole state, secrets included, for the client's
// database (layout in ENVELOPE.md, "Ratchet state"). The encoding is
// deterministic: equal states give equal bytes.
func (s *State) Marshal() []byte {
	out := make([]byte, 0, 1+32+1+4*32+3*4+2+len(s.ad)+8+4+len(s.skipped)*68)
	if s.he {
		out = append(out, stateVersionHE)
	} else {
		out = append(out, stateVersion)
	}
	out = append(out, s.dhs.Bytes()...)
	var flags byte
	if s.hasDHr {
		flags |= flagDHr
	}
	if s.hasCKs {
		flags |= flagCKs
	}
	if s.hasCKr {
		flags |= flagCKr
	}
	out = append(out, flags)
	out = append(out, s.dhr[:]...)
	out = append(out, s.rk[:]...)
	out = append(out, s.cks[:]...)
	out = append(out, s.ckr[:]...)
	out = binary.BigEndian.AppendUint32(out, s.ns)
	out = binary.BigEndian.AppendUint32(out, s.nr)
	out = binary.BigEndian.AppendUint32(out, s.pn)
	out = wire.AppendBytes16(out, s.ad)
	out = binary.BigEndian.AppendUint32(out, s.cfg.MaxSkip)
	out = binary.BigEndian.AppendUint32(out, s.cfg.MaxStored)
	out = binary.BigEndian.AppendUint32(out, uint32(len(s.skipped)))
	for _, k := range s.skipped {
		out = append(out, k.dh[:]...)
		out = binary.BigEndian.AppendUint32(out, k.n)
		out = append(out, k.mk[:]...)
	}
	if s.he {
		var hf byte
		if s.hasHKs {
			hf |= flagHKs
		}
		if s.hasHKr {
			hf |= flagHKr
		}
		out = append(out, hf)
		out = append(out, s.hks[:]...)
		out = append(out, s.hkr[:]...)
		out = append(out, s.nhks[:]...)
		out = append(out, s.nhkr[:]...)
	}
	return out
}

// Unmarshal decodes a state written by Marshal.
func Unmarshal(data []byte) (*State, error) {
	r := wire.NewReader(data)
	v := r.U8()
	if v != stateVersion && v != stateVersionHE {
		r.Failf("ratchet: state version %d", v)
	}
	priv := r.Bytes(32)
	s := &State{newKey: generateKey, he: v == stateVersionHE}
	flags := r.U8()
	if flags&^(flagDHr|flagCKs|flagCKr) != 0 {
		r.Failf("ratchet: state flags %#x", flags)
	}
	s.hasDHr, s.hasCKs, s.hasCKr = flags&flagDHr != 0, flags&flagCKs != 0, flags&flagCKr != 0
	r.Fixed(s.dhr[:])
	r.Fixed(s.rk[:])
	r.Fixed(s.cks[:])
	r.Fixed(s.ckr[:])
	s.ns, s.nr, s.pn = r.U32(), r.U32(), r.U32()
	s.ad = r.Bytes16()
	s.cfg.MaxSkip, s.cfg.MaxStored = r.U32(), r.U32()
	n := r.U32()
	if uint64(n)*68 > uint64(r.Len()) {
		r.Failf("ratchet: state claims %d skipped keys", n)
		n = 0
	}
	s.skipped = make([]skipped, n)
	for i := range s.skipped {
		r.Fixed(s.skipped[i].dh[:])
		s.skipped[i].n = r.U32()
		r.Fixed(s.skipped[i].mk[:])
	}
	if s.he {
		hf := r.U8()
		if hf&^(flagHKs|flagHKr) != 0 {
			r.Failf("ratchet: state header-key flags %#x", hf)
		}
		s.hasHKs, s.hasHKr = hf&flagHKs != 0, hf&flagHKr != 0
		r.Fixed(s.hks[:])
		r.Fixed(s.hkr[:])
		r.Fixed(s.nhks[:])
		r.Fixed(s.nhkr[:])
	}
	if err := r.Finish(); err != nil {
		return nil, fmt.Errorf("ratchet: state: %w", err)
	}
	if s.cfg.MaxSkip == 0 || s.cfg.MaxStored == 0 {
		return nil, fmt.Errorf("ratchet: state: zero limits")
	}
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("ratchet: state: ratchet key: %w", err)
	}
	s.dhs = k
	return s, nil
}
