package client

import (
	"testing"

	"github.com/chatd/chatd/codec"
	"github.com/chatd/chatd/internal/e2e/xeddsa"
)

// TestUploadsFitFrames: many keys are split into frames that each decode
// within the protocol's limits, carry every key once, with valid
// signatures, and the long-lived keys only in the first.
func TestUploadsFitFrames(t *testing.T) {
	d, err := NewDeviceKeys()
	if err != nil {
		t.Fatal(err)
	}
	const ec, kem = 650, 70
	ups, err := d.Uploads(true, ec, kem)
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 3 {
		t.Fatalf("%d frames, want 3 (300+300+50 EC, 32+32+6 KEM)", len(ups))
	}
	ids := map[uint32]bool{}
	for i, up := range ups {
		b := up.Append(nil)
		if len(b)-4 > codec.MaxLen {
			t.Fatalf("frame %d: len %d over %d", i, len(b)-4, codec.MaxLen)
		}
		f, err := codec.Decode(b)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		got := f.(*codec.KeysUpload)
		if (got.Signed != nil) != (i == 0) || (got.LastResort != nil) != (i == 0) {
			t.Fatalf("frame %d: long-lived keys present = %v", i, got.Signed != nil)
		}
		for _, k := range got.EC {
			if ids[k.ID] || d.EC[k.ID] == nil {
				t.Fatalf("EC id %d repeated or unknown", k.ID)
			}
			ids[k.ID] = true
		}
		for _, k := range got.KEM {
			if ids[k.ID] || d.KEM[k.ID] == nil {
				t.Fatalf("KEM id %d repeated or unknown", k.ID)
			}
			ids[k.ID] = true
			if !xeddsa.Verify(got.Identity[:], codec.SignedMessage(codec.AlgMLKEM1024, k.Key), k.Sig[:]) {
				t.Fatalf("KEM %d: bad signature", k.ID)
			}
		}
	}
	if len(ids) != ec+kem {
		t.Fatalf("%d keys, want %d", len(ids), ec+kem)
	}
	first := ups[0]
	if codec.KeysDigest(&first.Identity, first.Signed, first.LastResort) != d.Digest() {
		t.Fatal("Digest differs from the uploaded long-lived keys'")
	}
	b := codec.Bundle{Device: 1, Identity: first.Identity, Signed: *first.Signed, KEM: *first.LastResort}
	if err := VerifyBundle(&b); err != nil {
		t.Fatal(err)
	}
	b.Signed.Key[0] ^= 1
	if VerifyBundle(&b) == nil {
		t.Fatal("a bundle with a tampered signed prekey verified")
	}
}
