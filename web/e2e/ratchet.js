// The Double Ratchet (rev. 1) as internal/e2e/ratchet does it (PROTOCOL.md
// 14.4, 14.9): libsignal's KDFs, ChaCha20-Poly1305, a 40-byte clear
// header, MaxSkip / MaxStored, and transactional decrypt: a message that
// fails changes nothing, because decrypt works on a copy and the caller
// keeps the copy only on success.
import { x25519, hkdf, hmac, sha256, chacha20poly1305 } from '../vendor/noble.js';
import { concat, equal, u16, u32, Reader, MalformedError } from './bytes.js';
import { dh as agree, publicKey } from './pqxdh.js';

export const HEADER_SIZE = 40;
export const OVERHEAD = HEADER_SIZE + 16;
const MAX_U32 = 0xffffffff;
const te = new TextEncoder();
const ROOT_INFO = te.encode('WhisperRatchet');
const MESSAGE_INFO = te.encode('WhisperMessageKeys');
export const DEFAULTS = { maxSkip: 1000, maxStored: 2000 };

export class DecryptError extends Error {}
export class OldMessageError extends Error {}
export class TooManySkippedError extends Error {}

const randomKey = () => crypto.getRandomValues(new Uint8Array(32));

// ratchetPublic memoises the public half of recent ratchet keys: the page
// keeps sessions as bytes and rebuilds a State per message, and an X25519
// base multiplication per message sealed on the same chain is wasted work
// (Go's ecdh.PrivateKey caches it the same way).
const publics = new Map();
function ratchetPublic(priv) {
  const k = priv.join(',');
  let pub = publics.get(k);
  if (!pub) {
    pub = publicKey(priv);
    if (publics.size >= 64) publics.delete(publics.keys().next().value);
    publics.set(k, pub);
  }
  return pub;
}

export function kdfRK(rk, dh) {
  const okm = hkdf(sha256, dh, rk, ROOT_INFO, 64);
  return [okm.slice(0, 32), okm.slice(32)];
}

export function kdfCK(ck) {
  return [hmac(sha256, ck, Uint8Array.of(2)), hmac(sha256, ck, Uint8Array.of(1))];
}

export function messageKeys(mk) {
  const okm = hkdf(sha256, mk, new Uint8Array(32), MESSAGE_INFO, 80);
  return { key: okm.slice(0, 32), nonce: okm.slice(64, 76) };
}

function seal(header, mk, plaintext, ad) {
  const { key, nonce } = messageKeys(mk);
  return concat(header, chacha20poly1305(key, nonce, concat(ad, header)).encrypt(plaintext));
}

function open(msg, mk, ad) {
  const { key, nonce } = messageKeys(mk);
  try {
    return chacha20poly1305(key, nonce, concat(ad, msg.subarray(0, HEADER_SIZE))).decrypt(msg.subarray(HEADER_SIZE));
  } catch {
    throw new DecryptError('ratchet: message does not authenticate');
  }
}

// State is one side of a session. newKey draws ratchet private keys (the
// tests replay the Go vectors' keys through it).
export class State {
  constructor(f) {
    Object.assign(this, {
      dhs: null, dhr: null, rk: null, cks: null, ckr: null, ns: 0, nr: 0, pn: 0, ad: null,
      maxSkip: DEFAULTS.maxSkip, maxStored: DEFAULTS.maxStored, skipped: [], newKey: randomKey,
    }, f);
  }

  static alice(sk, ad, bobSPK, newKey = randomKey) {
    const s = new State({ rk: sk, ad: Uint8Array.from(ad), newKey });
    s.dhs = newKey();
    const d = agree(s.dhs, bobSPK);
    s.dhr = Uint8Array.from(bobSPK);
    [s.rk, s.cks] = kdfRK(s.rk, d);
    return s;
  }

  static bob(sk, ad, spkPriv, newKey = randomKey) {
    return new State({ rk: sk, ad: Uint8Array.from(ad), dhs: Uint8Array.from(spkPriv), newKey });
  }

  get hasReceived() {
    return this.ckr !== null;
  }

  clone() {
    return new State({ ...this, skipped: this.skipped.slice() });
  }

  encrypt(plaintext) {
    if (!this.cks) throw new Error('ratchet: no sending chain yet');
    if (this.ns === MAX_U32) throw new Error('ratchet: message counter exhausted');
    const [next, mk] = kdfCK(this.cks);
    const header = concat(ratchetPublic(this.dhs), u32(this.pn), u32(this.ns));
    const msg = seal(header, mk, plaintext, this.ad);
    this.cks = next;
    this.ns++;
    return msg;
  }

  // decrypt returns the plaintext and a new State; this one is unchanged
  // whether it succeeds or not.
  decrypt(msg) {
    if (msg.length < OVERHEAD) throw new MalformedError('ratchet: malformed message');
    const dv = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
    const h = { dh: msg.slice(0, 32), pn: dv.getUint32(32), n: dv.getUint32(36) };
    if (h.n === MAX_U32) throw new Error('ratchet: message counter exhausted');
    const s = this.clone();
    const i = s.skipped.findIndex((k) => k.n === h.n && equal(k.dh, h.dh));
    if (i >= 0) {
      const pt = open(msg, s.skipped[i].mk, s.ad);
      s.skipped.splice(i, 1);
      return { plaintext: pt, state: s };
    }
    const pt = s.dhr && equal(h.dh, s.dhr) ? s.current(msg, h) : s.newChain(msg, h);
    return { plaintext: pt, state: s };
  }

  current(msg, h) {
    if (!this.ckr) throw new DecryptError('ratchet: message does not authenticate');
    if (h.n < this.nr) throw new OldMessageError('ratchet: message key already used or forgotten');
    if (h.n - this.nr > this.maxSkip) throw new TooManySkippedError('ratchet: message skips too many keys');
    const { next, skip, mk } = skipTo(this.ckr, this.nr, h.n, h.dh);
    const pt = open(msg, mk, this.ad);
    this.ckr = next;
    this.nr = h.n + 1;
    this.store(skip);
    return pt;
  }

  newChain(msg, h) {
    let oldSkip = [];
    if (this.ckr && h.pn > this.nr) {
      if (h.pn - this.nr > this.maxSkip) throw new TooManySkippedError('ratchet: message skips too many keys');
      oldSkip = skipTo(this.ckr, this.nr, h.pn, this.dhr).skip;
    }
    if (oldSkip.length + h.n > this.maxSkip) throw new TooManySkippedError('ratchet: message skips too many keys');
    let d;
    try {
      d = agree(this.dhs, h.dh);
    } catch {
      throw new DecryptError('ratchet: message does not authenticate');
    }
    let [rk, ckr] = kdfRK(this.rk, d);
    const { next, skip, mk } = skipTo(ckr, 0, h.n, h.dh);
    const pt = open(msg, mk, this.ad);
    const dhs = this.newKey();
    let cks;
    [rk, cks] = kdfRK(rk, agree(dhs, h.dh));
    this.store(oldSkip);
    this.store(skip);
    this.pn = this.ns;
    this.ns = 0;
    this.nr = h.n + 1;
    this.dhr = h.dh;
    this.dhs = dhs;
    this.rk = rk;
    this.ckr = next;
    this.cks = cks;
    return pt;
  }

  store(k) {
    this.skipped.push(...k);
    const over = this.skipped.length - this.maxStored;
    if (over > 0) this.skipped.splice(0, over);
  }

  marshal() {
    const Z = new Uint8Array(32);
    const flags = (this.dhr ? 1 : 0) | (this.cks ? 2 : 0) | (this.ckr ? 4 : 0);
    const parts = [Uint8Array.of(1), this.dhs, Uint8Array.of(flags), this.dhr ?? Z, this.rk, this.cks ?? Z,
      this.ckr ?? Z, u32(this.ns), u32(this.nr), u32(this.pn), u16(this.ad.length), this.ad,
      u32(this.maxSkip), u32(this.maxStored), u32(this.skipped.length)];
    for (const k of this.skipped) parts.push(k.dh, u32(k.n), k.mk);
    return concat(...parts);
  }

  static unmarshal(data) {
    const r = new Reader(data, 'ratchet: state');
    if (r.u8() !== 1) throw new MalformedError('ratchet: state version');
    const s = new State({ dhs: r.bytes(32) });
    const flags = r.u8();
    if (flags & ~7) throw new MalformedError('ratchet: state flags');
    const dhr = r.bytes(32);
    s.rk = r.bytes(32);
    const cks = r.bytes(32);
    const ckr = r.bytes(32);
    s.dhr = flags & 1 ? dhr : null;
    s.cks = flags & 2 ? cks : null;
    s.ckr = flags & 4 ? ckr : null;
    s.ns = r.u32();
    s.nr = r.u32();
    s.pn = r.u32();
    s.ad = r.bytes(r.u16());
    s.maxSkip = r.u32();
    s.maxStored = r.u32();
    const n = r.u32();
    if (n * 68 > r.left) throw new MalformedError('ratchet: state claims too many skipped keys');
    for (let i = 0; i < n; i++) s.skipped.push({ dh: r.bytes(32), n: r.u32(), mk: r.bytes(32) });
    r.finish();
    if (!s.maxSkip || !s.maxStored) throw new MalformedError('ratchet: state: zero limits');
    return s;
  }
}

function skipTo(ck, from, to, dh) {
  const skip = [];
  for (let n = from; n < to; n++) {
    let k;
    [ck, k] = kdfCK(ck);
    skip.push({ dh, n, mk: k });
  }
  const [next, mk] = kdfCK(ck);
  return { next, skip, mk };
}
