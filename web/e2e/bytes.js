// Byte helpers for the end-to-end layer: big-endian integers, a strict
// reader (truncated input and trailing bytes are errors, PROTOCOL.md 14),
// and constant-time-ish comparison.

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export function u32(n) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

export function u16(n) {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, n);
  return b;
}

export function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

export const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
export const unhex = (s) => Uint8Array.from(s.match(/../g) ?? [], (b) => parseInt(b, 16));

export class MalformedError extends Error {}

// Reader reads fields in order and fails on short input; finish() fails on
// trailing bytes.
export class Reader {
  constructor(b, what) {
    this.b = b;
    this.off = 0;
    this.what = what;
  }

  need(n) {
    if (this.off + n > this.b.length) throw new MalformedError(`${this.what}: truncated`);
  }

  bytes(n) {
    this.need(n);
    const out = this.b.slice(this.off, this.off + n);
    this.off += n;
    return out;
  }

  u8() {
    return this.bytes(1)[0];
  }

  u16() {
    const b = this.bytes(2);
    return (b[0] << 8) | b[1];
  }

  u32() {
    const b = this.bytes(4);
    return new DataView(b.buffer).getUint32(0);
  }

  rest() {
    return this.bytes(this.b.length - this.off);
  }

  get left() {
    return this.b.length - this.off;
  }

  finish() {
    if (this.off !== this.b.length) throw new MalformedError(`${this.what}: ${this.b.length - this.off} trailing bytes`);
  }
}
