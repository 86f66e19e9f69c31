// Noise_XX_25519_ChaChaPoly_BLAKE2s, as PROTOCOL.md §8 uses it: the Noise
// spec (revision 34) HandshakeState, SymmetricState and CipherState, for
// both roles (the page is the initiator; the tests also play the server to
// check the responder's messages against the vectors). No browser offers
// BLAKE2s, so the primitives come from @noble (vendor/noble.js).
import { x25519, blake2s, hmac, chacha20poly1305 } from './vendor/noble.js';

const PROTOCOL_NAME = 'Noise_XX_25519_ChaChaPoly_BLAKE2s';
const DHLEN = 32;
const TAGLEN = 16;
const XX = [['e'], ['e', 'ee', 's', 'es'], ['s', 'se']];

const enc = new TextEncoder();
const EMPTY = new Uint8Array(0);

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

// A fresh X25519 key pair; priv may be given (the vectors fix them).
export function keyPair(priv) {
  const secret = priv ?? crypto.getRandomValues(new Uint8Array(32));
  return { priv: secret, pub: x25519.getPublicKey(secret) };
}

function dh(kp, pub) {
  return x25519.getSharedSecret(kp.priv, pub);
}

// hkdf is the Noise spec's HKDF with HMAC-BLAKE2s, returning n outputs.
function hkdf(ck, ikm, n) {
  const temp = hmac(blake2s, ck, ikm);
  const out = [];
  let prev = EMPTY;
  for (let i = 1; i <= n; i++) {
    prev = hmac(blake2s, temp, concat(prev, Uint8Array.of(i)));
    out.push(prev);
  }
  return out;
}

// CipherState: ChaChaPoly with the nonce as 4 zero bytes and a
// little-endian u64, counting from 0 in each direction.
export class CipherState {
  constructor(key) {
    this.k = key ?? null;
    this.n = 0n;
  }

  hasKey() {
    return this.k !== null;
  }

  nonce() {
    if (this.n >= 0xffffffffffffffffn) throw new Error('noise: nonce exhausted');
    const iv = new Uint8Array(12);
    new DataView(iv.buffer).setBigUint64(4, this.n, true);
    return iv;
  }

  encrypt(ad, plaintext) {
    if (!this.k) return plaintext;
    const out = chacha20poly1305(this.k, this.nonce(), ad).encrypt(plaintext);
    this.n++;
    return out;
  }

  // decrypt throws when the tag does not verify; the nonce only moves on
  // success, as the spec asks (a failed record ends the connection anyway).
  decrypt(ad, ciphertext) {
    if (!this.k) return ciphertext;
    if (ciphertext.length < TAGLEN) throw new Error('noise: record shorter than its tag');
    const out = chacha20poly1305(this.k, this.nonce(), ad).decrypt(ciphertext);
    this.n++;
    return out;
  }
}

class SymmetricState {
  constructor() {
    const name = enc.encode(PROTOCOL_NAME);
    // The name is longer than BLAKE2s' 32 bytes, so h starts as its hash.
    this.h = name.length <= 32 ? concat(name, new Uint8Array(32 - name.length)) : blake2s(name);
    this.ck = this.h;
    this.cipher = new CipherState();
  }

  mixHash(data) {
    this.h = blake2s(concat(this.h, data));
  }

  mixKey(ikm) {
    const [ck, k] = hkdf(this.ck, ikm, 2);
    this.ck = ck;
    this.cipher = new CipherState(k);
  }

  encryptAndHash(p) {
    const c = this.cipher.encrypt(this.h, p);
    this.mixHash(c);
    return c;
  }

  decryptAndHash(c) {
    const p = this.cipher.decrypt(this.h, c);
    this.mixHash(c);
    return p;
  }

  split() {
    const [k1, k2] = hkdf(this.ck, EMPTY, 2);
    return [new CipherState(k1), new CipherState(k2)];
  }
}

// Handshake runs XX. opts: initiator (bool), prologue (the 8 preamble
// bytes), s (static key pair; fresh if absent), e (ephemeral key pair,
// only for the vectors; fresh if absent).
export class Handshake {
  constructor({ initiator, prologue, s, e }) {
    this.initiator = initiator;
    this.s = s ?? keyPair();
    this.fixedE = e ?? null;
    this.e = null;
    this.rs = null;
    this.re = null;
    this.step = 0;
    this.ss = new SymmetricState();
    this.ss.mixHash(prologue);
  }

  get done() {
    return this.step === XX.length;
  }

  // remoteStatic is the peer's static public key, known after message 2.
  get remoteStatic() {
    return this.rs;
  }

  myTurn() {
    return (this.step % 2 === 0) === this.initiator;
  }

  dhToken(token) {
    // ee, es, se name (initiator's key, responder's key).
    const [mine, theirs] = {
      ee: [this.e, this.re],
      es: this.initiator ? [this.e, this.rs] : [this.s, this.re],
      se: this.initiator ? [this.s, this.re] : [this.e, this.rs],
    }[token];
    this.ss.mixKey(dh(mine, theirs));
  }

  // writeMessage returns the next handshake message (without chatd's u16
  // length).
  writeMessage(payload = EMPTY) {
    if (this.done || !this.myTurn()) throw new Error('noise: not our turn to write');
    const parts = [];
    for (const token of XX[this.step]) {
      if (token === 'e') {
        this.e = this.fixedE ?? keyPair();
        this.ss.mixHash(this.e.pub);
        parts.push(this.e.pub);
      } else if (token === 's') {
        parts.push(this.ss.encryptAndHash(this.s.pub));
      } else {
        this.dhToken(token);
      }
    }
    parts.push(this.ss.encryptAndHash(payload));
    this.step++;
    return concat(...parts);
  }

  // readMessage consumes the peer's next handshake message and returns its
  // payload; it throws if the message does not authenticate.
  readMessage(msg) {
    if (this.done || this.myTurn()) throw new Error('noise: not our turn to read');
    let off = 0;
    const take = (n) => {
      if (off + n > msg.length) throw new Error('noise: handshake message too short');
      const b = msg.subarray(off, off + n);
      off += n;
      return b;
    };
    for (const token of XX[this.step]) {
      if (token === 'e') {
        this.re = take(DHLEN).slice();
        this.ss.mixHash(this.re);
      } else if (token === 's') {
        const n = this.ss.cipher.hasKey() ? DHLEN + TAGLEN : DHLEN;
        this.rs = this.ss.decryptAndHash(take(n)).slice();
      } else {
        this.dhToken(token);
      }
    }
    const payload = this.ss.decryptAndHash(msg.subarray(off));
    this.step++;
    return payload;
  }

  // split gives the transport cipher states once the handshake is done:
  // send and recv from this side's point of view.
  split() {
    if (!this.done) throw new Error('noise: handshake not finished');
    const [c1, c2] = this.ss.split();
    return this.initiator ? { send: c1, recv: c2 } : { send: c2, recv: c1 };
  }
}
