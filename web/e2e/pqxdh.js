// PQXDH (rev. 3) as internal/e2e/pqxdh does it (PROTOCOL.md 14.2, 14.3):
// X25519 + ML-KEM-1024, SHA-256, chatd's own info string and encodings.
import { x25519, hkdf, sha256, ml_kem1024 } from '../vendor/noble.js';
import { concat, u32, Reader } from './bytes.js';
import * as xeddsa from './xeddsa.js';

export const INFO = 'chatd-e2e PQXDH v1 X25519 SHA-256 ML-KEM-1024';
export const KEM_KEY_SIZE = 1568;
export const KEM_CT_SIZE = 1568;
const TYPE_X25519 = 0x05;
const TYPE_MLKEM1024 = 0x0a;

export const encodeEC = (pub) => concat(Uint8Array.of(TYPE_X25519), pub);
export const encodeKEM = (pub) => concat(Uint8Array.of(TYPE_MLKEM1024), pub);

export class BadSignatureError extends Error {}
export class BadKeyError extends Error {}

// dh is X25519 refusing the all-zero result (a small-order peer key), as
// Go's crypto/ecdh does.
export function dh(priv, pub) {
  let s;
  try {
    s = x25519.getSharedSecret(priv, pub);
  } catch (e) {
    throw new BadKeyError(`pqxdh: bad public key: ${e.message}`);
  }
  if (s.every((b) => b === 0)) throw new BadKeyError('pqxdh: bad public key: all-zero agreement');
  return s;
}

export const publicKey = (priv) => x25519.getPublicKey(priv);

function random(n) {
  return crypto.getRandomValues(new Uint8Array(n));
}

// signPreKey signs an EC (kind 'ec') or KEM (kind 'kem') public key.
export function signPreKey(identityPriv, kind, pub, z = random(64)) {
  return xeddsa.sign(identityPriv, kind === 'ec' ? encodeEC(pub) : encodeKEM(pub), z);
}

// kemKeyPair derives an ML-KEM-1024 key pair from its 64-byte seed
// (d || z, FIPS 203), the form Go's mlkem.DecapsulationKey1024.Bytes uses.
export function kemKeyPair(seed) {
  return ml_kem1024.keygen(seed);
}

// A bundle: {identity, signed: {id, key, sig}, oneTime: {id, key} | null,
// kem: {id, key, sig}}.
export function marshalBundle(b) {
  return concat(Uint8Array.of(1), b.identity, u32(b.signed.id), b.signed.key, b.signed.sig,
    b.oneTime ? concat(Uint8Array.of(1), u32(b.oneTime.id), b.oneTime.key) : Uint8Array.of(0),
    u32(b.kem.id), b.kem.key, b.kem.sig);
}

export function unmarshalBundle(data) {
  const r = new Reader(data, 'pqxdh: bundle');
  if (r.u8() !== 1) throw new Error('pqxdh: bundle version');
  const b = { identity: r.bytes(32), signed: { id: r.u32(), key: r.bytes(32), sig: r.bytes(64) }, oneTime: null };
  const f = r.u8();
  if (f === 1) b.oneTime = { id: r.u32(), key: r.bytes(32) };
  else if (f !== 0) throw new Error('pqxdh: bad one-time prekey flag');
  b.kem = { id: r.u32(), key: r.bytes(KEM_KEY_SIZE), sig: r.bytes(64) };
  r.finish();
  return b;
}

// An initial message: {identity, ephemeral, signedId, oneTimeId (or null),
// kemId, ct}.
export function marshalInitial(m) {
  return concat(m.identity, m.ephemeral, u32(m.signedId),
    m.oneTimeId !== null ? concat(Uint8Array.of(1), u32(m.oneTimeId)) : Uint8Array.of(0),
    u32(m.kemId), m.ct);
}

export function readInitial(r) {
  const m = { identity: r.bytes(32), ephemeral: r.bytes(32), signedId: r.u32(), oneTimeId: null };
  const f = r.u8();
  if (f === 1) m.oneTimeId = r.u32();
  else if (f !== 0) throw new Error('pqxdh: bad one-time prekey flag');
  m.kemId = r.u32();
  m.ct = r.bytes(KEM_CT_SIZE);
  return m;
}

function derive(dhs, ss, ikA, ikB) {
  const ikm = concat(new Uint8Array(32).fill(0xff), ...dhs, ss);
  const sharedKey = hkdf(sha256, ikm, new Uint8Array(32), new TextEncoder().encode(INFO), 32);
  return { sharedKey, ad: concat(encodeEC(ikA), encodeEC(ikB)) };
}

// initiate runs Alice's side: it checks the bundle's signatures first.
// eph and encapsRandom are for known-answer tests; fresh ones otherwise.
export function initiate(identityPriv, b, eph = random(32), encapsRandom = undefined) {
  if (!xeddsa.validPublicKey(b.identity)) throw new BadKeyError('pqxdh: bad public key: identity key');
  if (!xeddsa.verify(b.identity, encodeEC(b.signed.key), b.signed.sig)) {
    throw new BadSignatureError(`pqxdh: prekey signature does not verify: signed prekey ${b.signed.id}`);
  }
  if (!xeddsa.verify(b.identity, encodeKEM(b.kem.key), b.kem.sig)) {
    throw new BadSignatureError(`pqxdh: prekey signature does not verify: KEM prekey ${b.kem.id}`);
  }
  const dhs = [dh(identityPriv, b.signed.key), dh(eph, b.identity), dh(eph, b.signed.key)];
  if (b.oneTime) dhs.push(dh(eph, b.oneTime.key));
  let enc;
  try {
    enc = ml_kem1024.encapsulate(b.kem.key, encapsRandom);
  } catch (e) {
    throw new BadKeyError(`pqxdh: bad public key: KEM prekey: ${e.message}`);
  }
  const m = { identity: publicKey(identityPriv), ephemeral: publicKey(eph), signedId: b.signed.id,
    oneTimeId: b.oneTime ? b.oneTime.id : null, kemId: b.kem.id, ct: enc.cipherText };
  return { initial: m, secret: derive(dhs, enc.sharedSecret, m.identity, b.identity) };
}

// respond runs Bob's side with the private prekeys the message names:
// spk {id, priv}, opk {id, priv} or null, kem {id, seed}.
export function respond(identityPriv, spk, opk, kem, m) {
  if (!spk || !kem || spk.id !== m.signedId || kem.id !== m.kemId ||
    (opk === null) !== (m.oneTimeId === null) || (opk && opk.id !== m.oneTimeId)) {
    throw new Error('pqxdh: initial message names other prekeys');
  }
  if (!xeddsa.validPublicKey(m.identity)) throw new BadKeyError('pqxdh: bad public key: initiator identity key');
  const dhs = [dh(spk.priv, m.identity), dh(identityPriv, m.ephemeral), dh(spk.priv, m.ephemeral)];
  if (opk) dhs.push(dh(opk.priv, m.ephemeral));
  const ss = ml_kem1024.decapsulate(m.ct, kemKeyPair(kem.seed).secretKey);
  return derive(dhs, ss, m.identity, publicKey(identityPriv));
}
