// Package e2e is the root of chatd's client-side end-to-end encryption.
//
// The subpackages follow Signal's public specifications without aiming for
// wire compatibility with Signal:
//
//   - xeddsa: XEdDSA signatures made and checked with X25519 keys, so one
//     identity key serves both key agreement and prekey signatures.
//   - pqxdh: the post-quantum extended triple Diffie-Hellman handshake
//     (X25519 + ML-KEM-1024) that starts a session from a prekey bundle.
//   - ratchet: the Double Ratchet that protects each 1:1 message, with
//     header encryption as an option chosen when a session starts.
//   - senderkey: Signal-style group sender keys (encrypt once, sign, fan out).
//   - envelope: the versioned bytes that travel in a chatd message body,
//     and the padded Content inside them.
//   - session: PQXDH + ratchet + envelope as the calls a client makes per
//     peer device (Start, Accept, Seal, Open), and group message wrapping.
//
// ENVELOPE.md documents every byte layout.
package e2e
