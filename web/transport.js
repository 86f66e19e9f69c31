// The connection: chatd's byte stream (PROTOCOL.md §1, §8) carried in
// WebSocket binary messages. WebSocket message boundaries mean nothing
// here: the server may put several records in one message or split one
// across two, so everything goes through byte readers.
import { Handshake } from './noise.js';
import { splitFrames, readPlainFrame } from './codec.js';

const EMPTY = new Uint8Array(0);
// PREAMBLE is "chatd", version 1, transport 01 (Noise XX), reserved 0.
export const PREAMBLE = Uint8Array.of(0x63, 0x68, 0x61, 0x74, 0x64, 1, 1, 0);
export const SUBPROTOCOL = 'chatd.v1';
const MAX_PLAIN = 65519; // a record's plaintext

const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

function withLen16(msg) {
  const out = new Uint8Array(2 + msg.length);
  out[0] = msg.length >> 8;
  out[1] = msg.length & 0xff;
  out.set(msg, 2);
  return out;
}

// sealRecord encrypts plaintext frames into one record: len u16 | ciphertext.
export function sealRecord(cs, plain) {
  return withLen16(cs.encrypt(EMPTY, plain));
}

// RecordReader collects bytes and hands out whole u16-framed units (the
// handshake messages and the records have the same framing).
export class RecordReader {
  constructor() {
    this.buf = EMPTY;
  }

  push(b) {
    const out = new Uint8Array(this.buf.length + b.length);
    out.set(this.buf);
    out.set(b, this.buf.length);
    this.buf = out;
  }

  // next returns the next unit's body, or null until all of it arrived.
  next() {
    if (this.buf.length < 2) return null;
    const n = (this.buf[0] << 8) | this.buf[1];
    if (this.buf.length < 2 + n) return null;
    const body = this.buf.slice(2, 2 + n);
    this.buf = this.buf.subarray(2 + n);
    return body;
  }
}

// RefusedError is a server's plain answer instead of a handshake: a
// GOAWAY (at capacity, overloaded, stopping) or an ERROR (bad preamble).
export class RefusedError extends Error {
  constructor(frame) {
    super(frame.type === 'GOAWAY'
      ? `server busy (GOAWAY reason ${frame.reason}), retry after ${frame.retryAfter} ms`
      : `server refused the connection: ERROR ${frame.code} ${frame.detail}`);
    this.frame = frame;
  }
}

// KeyRefusedError says the server presented a key other than the pinned one.
export class KeyRefusedError extends Error {
  constructor(got, want) {
    super(`SERVER KEY CHANGED: the server presented ${got}, but this client pinned ${want}. ` +
      'Not connecting: someone may be impersonating the server. If the operator really replaced the key, ' +
      'put the new one in ?key= (or forget the pinned key) and connect again.');
    this.got = got;
    this.want = want;
  }
}

// Link is one encrypted connection. connect() resolves once the handshake
// is done and the server key accepted; then frames come to onFrames and
// send() seals frames into records. checkKey(hex) decides on the server's
// static key: it returns nothing to accept, or throws to refuse.
export class Link {
  constructor(url, { checkKey, onFrames, onClose }) {
    this.url = url;
    this.checkKey = checkKey;
    this.onFrames = onFrames;
    this.onClose = onClose;
    this.serverKey = null;
    this.closed = false;
  }

  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url, SUBPROTOCOL);
      ws.binaryType = 'arraybuffer';
      this.ws = ws;
      const hs = new Handshake({ initiator: true, prologue: PREAMBLE });
      const rr = new RecordReader();
      let raw = EMPTY; // bytes before the first handshake message
      let cipher = null;
      let settled = false;
      const fail = (err) => {
        if (!settled) {
          settled = true;
          reject(err);
        }
        this.close(err);
      };
      ws.onopen = () => {
        const m1 = withLen16(hs.writeMessage());
        const first = new Uint8Array(PREAMBLE.length + m1.length);
        first.set(PREAMBLE);
        first.set(m1, PREAMBLE.length);
        ws.send(first);
      };
      ws.onerror = () => fail(new Error(`cannot connect to ${this.url}`));
      ws.onclose = (ev) => fail(new Error(`connection closed (${ev.code}${ev.reason ? ' ' + ev.reason : ''})`));
      ws.onmessage = (ev) => {
        if (this.closed) return;
        try {
          let data = new Uint8Array(ev.data);
          if (!cipher && !hs.done) {
            // A plain frame's u32 length starts 00 00; a handshake
            // message's u16 length is at least 32 (PROTOCOL.md §8).
            raw = concat(raw, data);
            if (raw.length < 2) return;
            if (raw[0] === 0 && raw[1] === 0) {
              const got = readPlainFrame(raw);
              if (got) fail(new RefusedError(got.frame));
              return;
            }
            data = raw;
            raw = EMPTY;
          }
          rr.push(data);
          for (let unit = rr.next(); unit; unit = rr.next()) {
            if (cipher) {
              const frames = splitFrames(cipher.recv.decrypt(EMPTY, unit));
              if (frames.length) this.onFrames(frames);
              continue;
            }
            hs.readMessage(unit);
            this.serverKey = hex(hs.remoteStatic);
            this.checkKey(this.serverKey); // throws to refuse, before we say anything more
            ws.send(withLen16(hs.writeMessage()));
            cipher = hs.split();
            this.cipher = cipher;
            settled = true;
            resolve(this);
          }
        } catch (err) {
          // A record that does not decrypt ends the connection silently,
          // as PROTOCOL.md §8 asks.
          fail(err);
        }
      };
    });
  }

  // send seals frames (encoded Uint8Arrays) into as few records as fit.
  send(...frames) {
    if (this.closed || !this.cipher) throw new Error('not connected');
    let batch = [];
    let size = 0;
    const flush = () => {
      if (batch.length) this.ws.send(sealRecord(this.cipher.send, concat(...batch)));
      batch = [];
      size = 0;
    };
    for (const f of frames) {
      if (size + f.length > MAX_PLAIN) flush();
      batch.push(f);
      size += f.length;
    }
    flush();
  }

  close(err) {
    if (this.closed) return;
    this.closed = true;
    try {
      this.ws?.close();
    } catch {
      // already closing
    }
    this.onClose?.(err);
  }
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
