// Sender keys for groups as internal/e2e/senderkey does them (PROTOCOL.md
// 14.7, 14.9): an HMAC chain, HKDF message keys, ChaCha20-Poly1305, and an
// Ed25519 signature over each message; a receiver keeps up to MaxChains
// chains per sender with skipped keys, and a failed decrypt changes
// nothing (decrypt works on a copy, as in ratchet.js).
import { ed25519, hkdf, hmac, sha256, chacha20poly1305 } from '../vendor/noble.js';
import { concat, equal, u32, Reader, MalformedError } from './bytes.js';

const INFO = new TextEncoder().encode('chatd-e2e sender key v1 message keys');
const HEADER = 1 + 16 + 4 + 4;
export const OVERHEAD = HEADER + 16 + 64;
const MAX_U32 = 0xffffffff;
export const DEFAULTS = { maxForwardJump: 2000, maxSkipped: 2000, maxChains: 5 };

const kdfCK = (ck) => [hmac(sha256, ck, Uint8Array.of(2)), hmac(sha256, ck, Uint8Array.of(1))];

function aead(seed, ad) {
  const okm = hkdf(sha256, seed, new Uint8Array(32), INFO, 44);
  return chacha20poly1305(okm.slice(0, 32), okm.slice(32, 44), ad);
}

const header = (id, chain, iteration) => concat(Uint8Array.of(1), id, u32(chain), u32(iteration));

export function marshalDistribution(d) {
  return concat(Uint8Array.of(1), d.id, u32(d.chain), u32(d.iteration), d.key, d.signing);
}

export function unmarshalDistribution(b) {
  const r = new Reader(b, 'senderkey: distribution');
  if (r.u8() !== 1) throw new MalformedError('senderkey: distribution version');
  const d = { id: r.bytes(16), chain: r.u32(), iteration: r.u32(), key: r.bytes(32), signing: r.bytes(32) };
  r.finish();
  return d;
}

export class Sender {
  constructor(id, chain, key, seed, iteration = 0) {
    Object.assign(this, { id, chain, key, seed, iteration });
  }

  static create(id) {
    const b = crypto.getRandomValues(new Uint8Array(68));
    return new Sender(id, new DataView(b.buffer).getUint32(0), b.slice(4, 36), b.slice(36));
  }

  // rotate starts a new chain (new chain id, chain key and signing key)
  // under the same distribution id.
  rotate() {
    let n;
    do n = Sender.create(this.id); while (n.chain === this.chain);
    Object.assign(this, n);
  }

  distribution() {
    return { id: this.id, chain: this.chain, iteration: this.iteration, key: this.key, signing: ed25519.getPublicKey(this.seed) };
  }

  encrypt(plaintext) {
    if (this.iteration === MAX_U32) throw new Error('senderkey: iteration counter exhausted');
    const [next, seed] = kdfCK(this.key);
    const h = header(this.id, this.chain, this.iteration);
    const signed = concat(h, aead(seed, h).encrypt(plaintext));
    const out = concat(signed, ed25519.sign(signed, this.seed));
    this.key = next;
    this.iteration++;
    return out;
  }

  marshal() {
    return concat(Uint8Array.of(1), this.id, u32(this.chain), u32(this.iteration), this.key, this.seed);
  }

  static unmarshal(b) {
    const r = new Reader(b, 'senderkey: sender');
    if (r.u8() !== 1) throw new MalformedError('senderkey: sender version');
    const id = r.bytes(16);
    const chain = r.u32();
    const iteration = r.u32();
    const s = new Sender(id, chain, r.bytes(32), r.bytes(32), iteration);
    r.finish();
    return s;
  }
}

export class Receiver {
  constructor(id, limits, chains) {
    Object.assign(this, { id, ...limits, chains });
  }

  static from(d) {
    return new Receiver(d.id, DEFAULTS, [chainFrom(d)]);
  }

  // process adds a distribution's chain (a rotation) in front; it throws
  // for another distribution id or a known chain with another signing key.
  process(d) {
    if (!equal(d.id, this.id)) throw new MalformedError('senderkey: distribution for another group or sender');
    const c = this.chains.find((x) => x.id === d.chain);
    if (c) {
      if (!equal(c.signing, d.signing)) throw new Error('senderkey: chain redistributed with another signing key');
      return;
    }
    this.chains.unshift(chainFrom(d));
    this.chains.length = Math.min(this.chains.length, this.maxChains);
  }

  clone() {
    return new Receiver(this.id, { maxForwardJump: this.maxForwardJump, maxSkipped: this.maxSkipped, maxChains: this.maxChains },
      this.chains.map((c) => ({ ...c, skipped: c.skipped.slice() })));
  }

  // decrypt returns {plaintext, receiver}: the new state; this one is
  // unchanged either way.
  decrypt(msg) {
    if (msg.length < OVERHEAD || msg[0] !== 1) throw new MalformedError('senderkey: malformed input');
    const dv = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
    const id = msg.subarray(1, 17);
    const chainID = dv.getUint32(17);
    const iteration = dv.getUint32(21);
    if (!equal(id, this.id)) throw new Error('senderkey: unknown sender chain');
    if (iteration === MAX_U32) throw new Error('senderkey: iteration counter exhausted');
    const r = this.clone();
    const c = r.chains.find((x) => x.id === chainID);
    if (!c) throw new Error('senderkey: unknown sender chain');
    const signed = msg.subarray(0, msg.length - 64);
    if (!ed25519.verify(msg.subarray(msg.length - 64), signed, c.signing, { zip215: false })) {
      throw new Error('senderkey: bad signature');
    }
    const ad = signed.subarray(0, HEADER);
    const ct = signed.subarray(HEADER);
    const open = (seed) => {
      try {
        return aead(seed, ad).decrypt(ct);
      } catch {
        throw new Error('senderkey: message does not authenticate');
      }
    };
    if (iteration < c.iteration) {
      const i = c.skipped.findIndex((k) => k.iteration === iteration);
      if (i < 0) throw new Error('senderkey: message key already used or forgotten');
      const pt = open(c.skipped[i].seed);
      c.skipped.splice(i, 1);
      return { plaintext: pt, receiver: r };
    }
    if (iteration - c.iteration > r.maxForwardJump) throw new Error('senderkey: message too far ahead in the chain');
    let ck = c.key;
    const skip = [];
    for (let n = c.iteration; n < iteration; n++) {
      let seed;
      [ck, seed] = kdfCK(ck);
      skip.push({ iteration: n, seed });
    }
    const [next, seed] = kdfCK(ck);
    const pt = open(seed);
    c.key = next;
    c.iteration = iteration + 1;
    c.skipped.push(...skip);
    if (c.skipped.length > r.maxSkipped) c.skipped.splice(0, c.skipped.length - r.maxSkipped);
    return { plaintext: pt, receiver: r };
  }

  marshal() {
    const parts = [Uint8Array.of(1), this.id, u32(this.maxForwardJump), u32(this.maxSkipped), u32(this.maxChains), u32(this.chains.length)];
    for (const c of this.chains) {
      parts.push(u32(c.id), u32(c.iteration), c.key, c.signing, u32(c.skipped.length));
      for (const k of c.skipped) parts.push(u32(k.iteration), k.seed);
    }
    return concat(...parts);
  }

  static unmarshal(b) {
    const r = new Reader(b, 'senderkey: receiver');
    if (r.u8() !== 1) throw new MalformedError('senderkey: receiver version');
    const id = r.bytes(16);
    const limits = { maxForwardJump: r.u32(), maxSkipped: r.u32(), maxChains: r.u32() };
    const n = r.u32();
    if (n * 76 > r.left) throw new MalformedError('senderkey: receiver chains');
    const chains = [];
    for (let i = 0; i < n; i++) {
      const c = { id: r.u32(), iteration: r.u32(), key: r.bytes(32), signing: r.bytes(32), skipped: [] };
      const k = r.u32();
      if (k * 36 > r.left) throw new MalformedError('senderkey: receiver skipped keys');
      for (let j = 0; j < k; j++) c.skipped.push({ iteration: r.u32(), seed: r.bytes(32) });
      chains.push(c);
    }
    r.finish();
    if (!limits.maxForwardJump || !limits.maxSkipped || !limits.maxChains || !chains.length) {
      throw new MalformedError('senderkey: receiver without limits or chains');
    }
    return new Receiver(id, limits, chains);
  }
}

function chainFrom(d) {
  return { id: d.chain, iteration: d.iteration, key: d.key, signing: d.signing, skipped: [] };
}
