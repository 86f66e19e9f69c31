// XEdDSA (Signal, rev. 1) over Curve25519, as internal/e2e/xeddsa does it:
// an X25519 key pair signs, the Montgomery u mapped to the Edwards point
// with sign bit 0. Verify is as strict as the Go code (PROTOCOL.md 14.1):
// it refuses a u that is not canonical, on the twist or of small order,
// an R that is not canonical or of small order, and an s >= l.
import { ed25519, sha512 } from '../vendor/noble.js';
import { concat } from './bytes.js';

const Point = ed25519.Point;
const P = Point.Fp.ORDER;
const L = Point.Fn.ORDER;

const mod = (a, m) => ((a % m) + m) % m;

function leToBig(b) {
  let n = 0n;
  for (let i = b.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(b[i]);
  return n;
}

function bigToLE(n, len = 32) {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) {
    b[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return b;
}

function pow(b, e, m) {
  let r = 1n;
  b = mod(b, m);
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}

const invert = (a) => (a === 0n ? 0n : pow(a, P - 2n, P)); // Invert(0) = 0, as Go's field package

// hash_1's prefix: 2^256 - 1 - 1, little-endian.
const HASH1 = Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 0xfe : 0xff));

const scalar = (h) => mod(leToBig(h), L);

// edwardsFromMontgomery is convert_mont, refusing every u an honest X25519
// key never has; it returns null for those.
function edwardsFromMontgomery(pub) {
  if (pub.length !== 32 || pub[31] & 0x80) return null;
  const u = leToBig(pub);
  if (u >= P) return null;
  const y = mod((u - 1n) * invert(u + 1n), P);
  let A;
  try {
    A = Point.fromBytes(bigToLE(y));
  } catch {
    return null; // no x for this y: u is on the twist
  }
  if (A.isSmallOrder()) return null;
  return A;
}

export function validPublicKey(pub) {
  return edwardsFromMontgomery(pub) !== null;
}

// keyPair is calculate_key_pair: the Edwards public key A (sign bit 0) and
// the scalar a with A = aB, from the clamped X25519 private key.
function keyPair(priv) {
  const c = Uint8Array.from(priv);
  c[0] &= 248;
  c[31] &= 127;
  c[31] |= 64;
  const k = mod(leToBig(c), L);
  const E = Point.BASE.multiply(k).toBytes();
  const a = E[31] & 0x80 ? mod(-k, L) : k;
  E[31] &= 0x7f;
  return { A: E, a };
}

export function sign(priv, msg, random) {
  if (priv.length !== 32) throw new Error('xeddsa: private key must be 32 bytes');
  if (random.length !== 64) throw new Error('xeddsa: random must be 64 bytes');
  const { A, a } = keyPair(priv);
  const r = scalar(sha512(concat(HASH1, bigToLE(a), msg, random)));
  const R = Point.BASE.multiply(r).toBytes();
  const h = scalar(sha512(concat(R, A, msg)));
  const s = mod(r + h * a, L);
  return concat(R, bigToLE(s));
}

export function verify(pub, msg, sig) {
  if (pub.length !== 32 || sig.length !== 64) return false;
  const A = edwardsFromMontgomery(pub);
  if (!A) return false;
  const Rb = sig.subarray(0, 32);
  const s = leToBig(sig.subarray(32));
  if (s >= L) return false;
  let R;
  try {
    R = Point.fromBytes(Rb); // strict: refuses y >= p
  } catch {
    return false;
  }
  if (R.isSmallOrder()) return false;
  const h = scalar(sha512(concat(Rb, A.toBytes(), msg)));
  // sB - hA, compared by encoding, which also refuses a non-canonical R.
  const check = Point.BASE.multiplyUnsafe(s).subtract(A.multiplyUnsafe(h));
  const cb = check.toBytes();
  let d = 0;
  for (let i = 0; i < 32; i++) d |= cb[i] ^ Rb[i];
  return d === 0;
}
