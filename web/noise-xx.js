// Noise_XX_25519_ChaChaPoly_BLAKE2s for chatd's browser client
// (PROTOCOL.md section 8), on @noble/curves, @noble/hashes and
// @noble/ciphers: WebCrypto has no BLAKE2s, and no npm Noise package
// speaks this suite (notes/web-clients.md section 3). Both roles are here
// so that the test can reproduce every vector of PROTOCOL.md; a page uses
// the initiator only. Not done yet: IK (transport 02) and rekeying.

import { x25519 } from '@noble/curves/ed25519.js';
import { blake2s } from '@noble/hashes/blake2.js';
import { hmac } from '@noble/hashes/hmac.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';

const PROTOCOL_NAME = 'Noise_XX_25519_ChaChaPoly_BLAKE2s';
const HASHLEN = 32;

const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) { out.set(p, i); i += p.length; }
  return out;
};

const hmacB2s = (key, data) => hmac(blake2s, key, data);

// hkdf is the Noise spec's HKDF (section 4.3) with two outputs.
function hkdf(ck, ikm) {
  const temp = hmacB2s(ck, ikm);
  const out1 = hmacB2s(temp, Uint8Array.of(1));
  const out2 = hmacB2s(temp, concat(out1, Uint8Array.of(2)));
  return [out1, out2];
}

// nonce is 4 zero bytes and the counter as a little-endian u64.
function nonce(n) {
  const b = new Uint8Array(12);
  new DataView(b.buffer).setBigUint64(4, BigInt(n), true);
  return b;
}

// CipherState: one direction's key and counter.
export class CipherState {
  constructor(k) { this.k = k; this.n = 0; }
  encrypt(ad, plaintext) {
    if (!this.k) return plaintext;
    return chacha20poly1305(this.k, nonce(this.n++), ad).encrypt(plaintext);
  }
  decrypt(ad, ciphertext) {
    if (!this.k) return ciphertext;
    const pt = chacha20poly1305(this.k, nonce(this.n), ad).decrypt(ciphertext); // throws if altered
    this.n++;
    return pt;
  }
}

class SymmetricState {
  constructor() {
    const name = new TextEncoder().encode(PROTOCOL_NAME);
    this.h = name.length <= HASHLEN ? concat(name, new Uint8Array(HASHLEN - name.length)) : blake2s(name);
    this.ck = this.h;
    this.cs = new CipherState(null);
  }
  mixHash(data) { this.h = blake2s(concat(this.h, data)); }
  mixKey(ikm) {
    const [ck, k] = hkdf(this.ck, ikm);
    this.ck = ck;
    this.cs = new CipherState(k);
  }
  encryptAndHash(pt) { const ct = this.cs.encrypt(this.h, pt); this.mixHash(ct); return ct; }
  decryptAndHash(ct) { const pt = this.cs.decrypt(this.h, ct); this.mixHash(ct); return pt; }
  split() {
    const [k1, k2] = hkdf(this.ck, new Uint8Array(0));
    return [new CipherState(k1), new CipherState(k2)];
  }
}

const keypair = (priv) => ({ priv, pub: x25519.getPublicKey(priv) });
const dh = (kp, pub) => x25519.getSharedSecret(kp.priv, pub);

// Handshake runs XX. opts: initiator (bool), prologue (the preamble),
// staticPriv and ephemeralPriv (32 bytes each; random when absent, as they
// must be outside tests). writeMessage and readMessage take and return the
// Noise messages without chatd's u16 length; after the third message,
// session() returns { send, recv, remoteStatic }.
export class Handshake {
  constructor({ initiator, prologue, staticPriv, ephemeralPriv }) {
    this.initiator = initiator;
    this.s = keypair(staticPriv ?? x25519.utils.randomSecretKey());
    this.ePriv = ephemeralPriv;
    this.ss = new SymmetricState();
    this.ss.mixHash(prologue);
    this.step = 0; // messages done
    this.rs = null;
    this.re = null;
  }

  myTurn() { return (this.step % 2 === 0) === this.initiator; }

  writeMessage() {
    if (!this.myTurn() || this.step > 2) throw new Error('noise: not our turn to write');
    const ss = this.ss;
    const parts = [];
    if (this.step < 2) { // -> e  or  <- e, ee, s, es
      this.e = keypair(this.ePriv ?? x25519.utils.randomSecretKey());
      parts.push(this.e.pub);
      ss.mixHash(this.e.pub);
      if (this.step === 1) {
        ss.mixKey(dh(this.e, this.re));                // ee
        parts.push(ss.encryptAndHash(this.s.pub));     // s
        ss.mixKey(dh(this.s, this.re));                // es (responder: s with re)
      }
    } else { // -> s, se
      parts.push(ss.encryptAndHash(this.s.pub));
      ss.mixKey(dh(this.s, this.re));                  // se (initiator: s with re)
    }
    parts.push(ss.encryptAndHash(new Uint8Array(0)));  // empty payload
    this.step++;
    return concat(...parts);
  }

  readMessage(msg) {
    if (this.myTurn() || this.step > 2) throw new Error('noise: not our turn to read');
    const ss = this.ss;
    let i = 0;
    const take = (n) => {
      if (msg.length < i + n) throw new Error('noise: message too short');
      const b = msg.subarray(i, i + n); i += n; return b;
    };
    if (this.step < 2) {
      this.re = take(32).slice();
      ss.mixHash(this.re);
      if (this.step === 1) {
        ss.mixKey(dh(this.e, this.re));                // ee
        this.rs = ss.decryptAndHash(take(48));         // s
        ss.mixKey(dh(this.e, this.rs));                // es (initiator: e with rs)
      }
    } else {
      this.rs = ss.decryptAndHash(take(48));           // s
      ss.mixKey(dh(this.e, this.rs));                  // se (responder: e with rs)
    }
    ss.decryptAndHash(msg.subarray(i));                // payload, empty
    this.step++;
  }

  session() {
    if (this.step < 3) return null;
    const [c1, c2] = this.ss.split();
    return this.initiator
      ? { send: c1, recv: c2, remoteStatic: this.rs }
      : { send: c2, recv: c1, remoteStatic: this.rs };
  }
}
