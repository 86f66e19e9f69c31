package ratchet

import (
	"crypto/ecdh"
	"encoding/binary"
	"fmt"

	"github.com/chatd/chatd/internal/e2e/internal/wire"
)

// stateVersion is the first byte of a marshalled State.
const stateVersion = 1

const (
	flagDHr = 1 << iota
	flagCKs
	flagCKr
)

// Marshal encodes the whole state, secrets included, for the client's
// database (layout in ENVELOPE.md, "Ratchet state"). The encoding is
// deterministic: equal states give equal bytes.
func (s *State) Marshal() []byte {
	out := make([]byte, 0, 1+32+1+4*32+3*4+2+len(s.ad)+8+4+len(s.skipped)*68)
	out = append(out, stateVersion)
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
	return out
}

// Unmarshal decodes a state written by Marshal.
func Unmarshal(data []byte) (*State, error) {
	r := wire.NewReader(data)
	if v := r.U8(); v != stateVersion {
		r.Failf("ratchet: state version %d", v)
	}
	priv := r.Bytes(32)
	s := &State{newKey: generateKey}
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
