// chatd's frames (PROTOCOL.md §1 and §6): len u32 | type u8 | body.
// Every frame is described once, as its fields in wire order, and one
// encoder and one decoder walk those descriptions. u64 fields are BigInt
// (ids in a cluster use all 64 bits); times are u64 too.

const te = new TextEncoder();
const td = new TextDecoder('utf-8', { fatal: true });

export const MAX_FRAME = 65515; // len: the type byte and the body

// Field kinds: u8 u16 u32 u64, key32 ([32]), str8 (string), bytes16 (Uint8Array), id
// ([16]), token ([32]), ids (count u8, [16] x count), users8 (count u8,
// u64 x count), users16 (count u16, u64 x count), members (count u16,
// (user u64, role u8) x count), groups (count u16, (group u64, name str8)
// x count), and the prekey directory's: a signed EC key is {id, key [32],
// sig [64]}, a signed KEM key {id, key [1568], sig [64]}; optSignedEC /
// optSignedKEM (has u8, then the key if 1; null when absent), ecKeys
// (count u16, (id u32, key [32]) x count), kemKeys (count u8, signed KEM
// key x count), bundles (count u8, (device u16, identity [32], signed EC
// key, has u8, (id u32, key [32]) if 1, signed KEM key) x count).
const F = (name, kind, wire = name) => ({ name, kind, wire });

// SPEC lists the frames by type: [type, name, fields]. Wire names are the
// ones PROTOCOL.md's annotated vectors use.
const SPEC = [
  [0x01, 'REGISTER', [F('name', 'str8'), F('password', 'str8')]],
  [0x02, 'LOGIN', [F('name', 'str8'), F('password', 'str8')]],
  [0x03, 'RESUME', [F('token', 'token')]],
  [0x04, 'WELCOME', [F('user', 'u64'), F('token', 'token'), F('keepalive', 'u16'), F('window', 'u16'),
    F('maxBody', 'u32', 'max_body'), F('time', 'u64')]],
  [0x05, 'LOGOUT', []],
  [0x06, 'PASSWORD', [F('old', 'str8', 'old password'), F('new', 'str8', 'new password')]],
  [0x07, 'LOOKUP', [F('req', 'u32'), F('user', 'u64'), F('name', 'str8')]],
  [0x08, 'USER', [F('req', 'u32'), F('user', 'u64'), F('name', 'str8')]],
  [0x09, 'OK', [F('req', 'u32')]],
  [0x10, 'SEND', [F('id', 'id'), F('flags', 'u8'), F('to', 'u64'), F('body', 'bytes16')]],
  [0x11, 'SENT', [F('id', 'id'), F('time', 'u64')]],
  [0x12, 'DELIVER', [F('seq', 'u64'), F('id', 'id'), F('from', 'u64'), F('group', 'u64'), F('time', 'u64'),
    F('body', 'bytes16')]],
  [0x13, 'ACK', [F('seq', 'u64')]],
  [0x14, 'READ', [F('to', 'u64'), F('group', 'u64'), F('ids', 'ids', 'message ids')]],
  [0x15, 'RECEIPT', [F('seq', 'u64'), F('kind', 'u8'), F('by', 'u64'), F('group', 'u64'), F('time', 'u64'),
    F('ids', 'ids', 'message ids')]],
  [0x16, 'TYPING', [F('to', 'u64'), F('flags', 'u8'), F('state', 'u8')]],
  [0x17, 'IS_TYPING', [F('from', 'u64'), F('group', 'u64'), F('state', 'u8')]],
  [0x18, 'SENT_DELIVERED', [F('id', 'id'), F('time', 'u64'), F('delivered', 'u64')]],
  [0x20, 'SUBSCRIBE', [F('users', 'users8', 'user ids')]],
  [0x21, 'UNSUBSCRIBE', [F('users', 'users8', 'user ids')]],
  [0x22, 'PRESENCE', [F('user', 'u64'), F('state', 'u8'), F('lastSeen', 'u64', 'last_seen')]],
  [0x23, 'PRIVACY', [F('flags', 'u8')]],
  [0x30, 'GROUP_CREATE', [F('req', 'u32'), F('name', 'str8'), F('users', 'users16', 'user ids')]],
  [0x31, 'GROUP_ADD', [F('req', 'u32'), F('group', 'u64'), F('users', 'users16', 'user ids')]],
  [0x32, 'GROUP_REMOVE', [F('req', 'u32'), F('group', 'u64'), F('users', 'users16', 'user ids')]],
  [0x33, 'GROUP_LEAVE', [F('req', 'u32'), F('group', 'u64')]],
  [0x34, 'GROUP_RENAME', [F('req', 'u32'), F('group', 'u64'), F('name', 'str8')]],
  [0x35, 'GROUP_ADMIN', [F('req', 'u32'), F('group', 'u64'), F('user', 'u64'), F('admin', 'u8')]],
  [0x36, 'GROUP_GET', [F('req', 'u32'), F('group', 'u64')]],
  [0x37, 'GROUP_LIST', [F('req', 'u32')]],
  [0x38, 'GROUP_INFO', [F('req', 'u32'), F('group', 'u64'), F('name', 'str8'), F('members', 'members')]],
  [0x39, 'GROUPS', [F('req', 'u32'), F('groups', 'groups')]],
  [0x3a, 'GROUP_EVENT', [F('seq', 'u64'), F('group', 'u64'), F('kind', 'u8'), F('actor', 'u64'), F('time', 'u64'),
    F('name', 'str8'), F('users', 'users16', 'user ids')]],
  [0x40, 'PING', [F('nonce', 'u64')]],
  [0x41, 'PONG', [F('nonce', 'u64')]],
  [0x42, 'GOAWAY', [F('retryAfter', 'u32', 'retry_after'), F('reason', 'u8')]],
  [0x43, 'KICKED', [F('reason', 'u8')]],
  [0x44, 'OPTIONS', [F('req', 'u32'), F('flags', 'u32')]],
  // The prekey directory (section 11), for end-to-end encryption (section
  // 14). Keys are Uint8Arrays; the composite fields are described below.
  [0x60, 'KEYS_UPLOAD', [F('req', 'u32'), F('flags', 'u8'), F('identity', 'key32'),
    F('signed', 'optSignedEC', '(signed prekey)'), F('lastResort', 'optSignedKEM', '(last resort)'),
    F('ec', 'ecKeys', '(ec prekeys)'), F('kem', 'kemKeys', '(kem prekeys)')]],
  [0x61, 'KEYS_COUNT', [F('req', 'u32')]],
  [0x62, 'KEYS_COUNTS', [F('req', 'u32'), F('device', 'u16'), F('ec', 'u16'), F('kem', 'u16')]],
  [0x63, 'KEYS_FETCH', [F('req', 'u32'), F('user', 'u64'), F('device', 'u16')]],
  [0x64, 'KEYS_BUNDLE', [F('req', 'u32'), F('user', 'u64'), F('bundles', 'bundles', '(bundles)')]],
  [0x65, 'KEYS_CHECK', [F('req', 'u32'), F('digest', 'key32')]],
  [0x66, 'KEYS_LOW', [F('device', 'u16'), F('ec', 'u16'), F('kem', 'u16')]],
  [0x67, 'IDENTITY_CHANGED', [F('user', 'u64'), F('device', 'u16')]],
  [0x7f, 'ERROR', [F('code', 'u16'), F('req', 'u32'), F('id', 'id'), F('detail', 'str8')]],
];

export const T = {}; // name -> type byte
const byType = new Map();
for (const [type, name, fields] of SPEC) {
  T[name] = type;
  byType.set(type, { name, fields });
}

// fieldsOf returns a frame name's field descriptions (for the tests).
export function fieldsOf(name) {
  return byType.get(T[name])?.fields;
}

export const FLAG_DUP = 1;
export const FLAG_GROUP = 2;
export const OPTION_SENT_DELIVERED = 1; // OPTIONS flags bit 0 (PROTOCOL.md §3)
export const RECEIPT = { DELIVERED: 1, READ: 2, EXPIRED: 3 };

class Writer {
  constructor() {
    this.buf = new Uint8Array(64);
    this.len = 0;
  }

  grow(n) {
    if (this.len + n <= this.buf.length) return;
    const b = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }

  int(v, size) {
    this.grow(size);
    const dv = new DataView(this.buf.buffer, this.len, size);
    const big = BigInt(v);
    if (big < 0n || big >= 1n << BigInt(size * 8)) throw new RangeError(`codec: ${v} does not fit ${size} bytes`);
    if (size === 8) dv.setBigUint64(0, big);
    else if (size === 4) dv.setUint32(0, Number(big));
    else if (size === 2) dv.setUint16(0, Number(big));
    else dv.setUint8(0, Number(big));
    this.len += size;
  }

  raw(b) {
    this.grow(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  fixed(b, n, what) {
    if (!(b instanceof Uint8Array) || b.length !== n) throw new RangeError(`codec: ${what} must be ${n} bytes`);
    this.raw(b);
  }

  sized(b, lenSize, what) {
    if (b.length >= 2 ** (8 * lenSize)) throw new RangeError(`codec: ${what} too long`);
    this.int(b.length, lenSize);
    this.raw(b);
  }

  bytes() {
    return this.buf.slice(0, this.len);
  }
}

const KEM_KEY = 1568;

function writeSigned(w, k, size) {
  w.int(k.id, 4);
  w.fixed(k.key, size, 'prekey');
  w.fixed(k.sig, 64, 'signature');
}

function writeOpt(w, k, size) {
  w.int(k ? 1 : 0, 1);
  if (k) writeSigned(w, k, size);
}

function writeOptEC(w, k) {
  w.int(k ? 1 : 0, 1);
  if (k) { w.int(k.id, 4); w.fixed(k.key, 32, 'ec prekey'); }
}

const asBytes = (v) => (typeof v === 'string' ? te.encode(v) : v);

function writeField(w, f, v) {
  if (v === undefined) throw new TypeError(`codec: field ${f.name} missing`);
  switch (f.kind) {
    case 'u8': return w.int(v, 1);
    case 'u16': return w.int(v, 2);
    case 'u32': return w.int(v, 4);
    case 'u64': return w.int(v, 8);
    case 'str8': return w.sized(asBytes(v), 1, f.name);
    case 'bytes16': return w.sized(asBytes(v), 2, f.name);
    case 'id': return w.fixed(v, 16, f.name);
    case 'key32': return w.fixed(v, 32, f.name);
    case 'optSignedEC': return writeOpt(w, v, 32);
    case 'optSignedKEM': return writeOpt(w, v, KEM_KEY);
    case 'ecKeys':
      w.int(v.length, 2);
      return v.forEach((k) => { w.int(k.id, 4); w.fixed(k.key, 32, 'ec prekey'); });
    case 'kemKeys':
      w.int(v.length, 1);
      return v.forEach((k) => writeSigned(w, k, KEM_KEY));
    case 'bundles':
      w.int(v.length, 1);
      return v.forEach((b) => {
        w.int(b.device, 2);
        w.fixed(b.identity, 32, 'identity');
        writeSigned(w, b.signed, 32);
        writeOptEC(w, b.oneTime);
        writeSigned(w, b.kem, KEM_KEY);
      });
    case 'token': return w.fixed(v, 32, f.name);
    case 'ids':
      if (v.length < 1 || v.length > 255) throw new RangeError('codec: 1 to 255 ids');
      w.int(v.length, 1);
      return v.forEach((id) => w.fixed(id, 16, 'id'));
    case 'users8':
      if (v.length < 1 || v.length > 255) throw new RangeError('codec: 1 to 255 users');
      w.int(v.length, 1);
      return v.forEach((u) => w.int(u, 8));
    case 'users16':
      w.int(v.length, 2);
      return v.forEach((u) => w.int(u, 8));
    case 'members':
      w.int(v.length, 2);
      return v.forEach((m) => { w.int(m.user, 8); w.int(m.role, 1); });
    case 'groups':
      w.int(v.length, 2);
      return v.forEach((g) => { w.int(g.group, 8); w.sized(asBytes(g.name), 1, 'name'); });
  }
  throw new Error(`codec: unknown field kind ${f.kind}`);
}

// encodeField gives one field's bytes as they appear in a frame (the tests
// compare them with the annotated vector lines).
export function encodeField(f, v) {
  const w = new Writer();
  writeField(w, f, v);
  return w.bytes();
}

// encode builds a whole frame from its name and fields, e.g.
// encode('SEND', {id, flags: 0, to: 2n, body: 'hi'}).
export function encode(name, fields = {}) {
  const type = T[name];
  if (type === undefined) throw new Error(`codec: unknown frame ${name}`);
  const w = new Writer();
  w.int(0, 4);
  w.int(type, 1);
  for (const f of byType.get(type).fields) writeField(w, f, fields[f.name]);
  const out = w.bytes();
  if (out.length - 4 > MAX_FRAME) throw new RangeError(`codec: ${name} frame too large`);
  new DataView(out.buffer).setUint32(0, out.length - 4);
  return out;
}

class Reader {
  constructor(b) {
    this.b = b;
    this.dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    this.off = 0;
  }

  need(n) {
    if (this.off + n > this.b.length) throw new Error('codec: malformed frame (body too short)');
  }

  int(size) {
    this.need(size);
    const o = this.off;
    this.off += size;
    switch (size) {
      case 1: return this.dv.getUint8(o);
      case 2: return this.dv.getUint16(o);
      case 4: return this.dv.getUint32(o);
      default: return this.dv.getBigUint64(o);
    }
  }

  raw(n) {
    this.need(n);
    const b = this.b.slice(this.off, this.off + n);
    this.off += n;
    return b;
  }
}

const readSigned = (r, size) => ({ id: r.int(4), key: r.raw(size), sig: r.raw(64) });

function readOpt(r, read) {
  const has = r.int(1);
  if (has > 1) throw new Error('codec: malformed frame (presence byte not 0 or 1)');
  return has ? read() : null;
}

function readField(r, f) {
  switch (f.kind) {
    case 'u8': return r.int(1);
    case 'u16': return r.int(2);
    case 'u32': return r.int(4);
    case 'u64': return r.int(8);
    case 'str8': return td.decode(r.raw(r.int(1)));
    case 'bytes16': return r.raw(r.int(2));
    case 'id': return r.raw(16);
    case 'key32': return r.raw(32);
    case 'optSignedEC': return readOpt(r, () => readSigned(r, 32));
    case 'optSignedKEM': return readOpt(r, () => readSigned(r, KEM_KEY));
    case 'ecKeys': return Array.from({ length: r.int(2) }, () => ({ id: r.int(4), key: r.raw(32) }));
    case 'kemKeys': return Array.from({ length: r.int(1) }, () => readSigned(r, KEM_KEY));
    case 'bundles': return Array.from({ length: r.int(1) }, () => ({
      device: r.int(2), identity: r.raw(32), signed: readSigned(r, 32),
      oneTime: readOpt(r, () => ({ id: r.int(4), key: r.raw(32) })), kem: readSigned(r, KEM_KEY),
    }));
    case 'token': return r.raw(32);
    case 'ids': return Array.from({ length: r.int(1) }, () => r.raw(16));
    case 'users8': return Array.from({ length: r.int(1) }, () => r.int(8));
    case 'users16': return Array.from({ length: r.int(2) }, () => r.int(8));
    case 'members': return Array.from({ length: r.int(2) }, () => ({ user: r.int(8), role: r.int(1) }));
    case 'groups': return Array.from({ length: r.int(2) }, () => ({ group: r.int(8), name: td.decode(r.raw(r.int(1))) }));
  }
  throw new Error(`codec: unknown field kind ${f.kind}`);
}

// decodeBody turns a type and body into {type: name, ...fields}; a body
// longer or shorter than its fields is malformed, as in PROTOCOL.md §1.
export function decodeBody(type, body) {
  const spec = byType.get(type);
  if (!spec) throw new Error(`codec: unknown frame type 0x${type.toString(16)}`);
  const r = new Reader(body);
  const out = { type: spec.name };
  for (const f of spec.fields) out[f.name] = readField(r, f);
  if (r.off !== body.length) throw new Error(`codec: malformed ${spec.name} (${body.length - r.off} extra bytes)`);
  return out;
}

// decode reads one whole frame (len, type, body).
export function decode(frame) {
  const { len, complete } = header(frame);
  if (!complete || frame.length !== 4 + len) throw new Error('codec: not one whole frame');
  return decodeBody(frame[4], frame.subarray(5));
}

function header(b) {
  if (b.length < 4) return { complete: false };
  const len = new DataView(b.buffer, b.byteOffset, 4).getUint32(0);
  if (len < 1 || len > MAX_FRAME) throw new Error(`codec: frame len ${len} out of range`);
  return { len, complete: b.length >= 4 + len };
}

// splitFrames decodes the frames a record's plaintext holds (a record
// never splits a frame, PROTOCOL.md §8).
export function splitFrames(plain) {
  const out = [];
  let off = 0;
  while (off < plain.length) {
    const { len, complete } = header(plain.subarray(off));
    if (!complete) throw new Error('codec: record ends inside a frame');
    out.push(decodeBody(plain[off + 4], plain.subarray(off + 5, off + 4 + len)));
    off += 4 + len;
  }
  return out;
}

// readPlainFrame takes one frame off the front of b, for the plaintext a
// server sends before Noise (a refusal): {frame, rest} or null if b holds
// only part of it.
export function readPlainFrame(b) {
  const { len, complete } = header(b);
  if (!complete) return null;
  return { frame: decodeBody(b[4], b.subarray(5, 4 + len)), rest: b.subarray(4 + len) };
}
