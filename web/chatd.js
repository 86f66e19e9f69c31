// A chatd connection over the WebSocket binding (PROTOCOL.md section 10):
// the preamble and Noise XX handshake, then frames sealed in records. The
// WebSocket's messages are treated as one byte stream, as the binding
// requires. Runs in browsers and in Node (20 with --experimental-websocket,
// 22 and later as is). Frames are passed as raw bytes (len u32 | type |
// body); encoding them is the caller's (see PROTOCOL.md section 6).

import { Handshake } from './noise-xx.js';

export const SUBPROTOCOL = 'chatd.v1';
const PREAMBLE = Uint8Array.of(0x63, 0x68, 0x61, 0x74, 0x64, 1, 1, 0); // "chatd", v1, Noise XX
const NO_AD = new Uint8Array(0);
const MAX_RECORD_PLAINTEXT = 65519;

const u16 = (n) => Uint8Array.of(n >> 8, n & 0xff);
const concat = (a, b) => { const o = new Uint8Array(a.length + b.length); o.set(a); o.set(b, a.length); return o; };
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

// connect opens url, runs the handshake and resolves to a Conn. pin, if
// given (32 bytes or hex), must equal the server's static key.
export function connect(url, { pin, WebSocketImpl = globalThis.WebSocket } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocketImpl(url, SUBPROTOCOL);
    ws.binaryType = 'arraybuffer';
    const hs = new Handshake({ initiator: true, prologue: PREAMBLE });
    let conn = null;
    let buf = new Uint8Array(0);
    const fail = (err) => { ws.close(); if (conn) conn._end(err); else reject(err); };
    ws.onopen = () => {
      if (ws.protocol !== SUBPROTOCOL) return fail(new Error(`chatd: server chose subprotocol "${ws.protocol}"`));
      const m1 = hs.writeMessage();
      ws.send(concat(PREAMBLE, concat(u16(m1.length), m1))); // one message, or several: boundaries mean nothing
    };
    ws.onerror = () => fail(new Error('chatd: websocket error'));
    ws.onclose = (ev) => { const e = new Error(`chatd: closed (${ev.code})`); if (conn) conn._end(e); else reject(e); };
    ws.onmessage = (ev) => {
      buf = concat(buf, new Uint8Array(ev.data));
      try {
        // Every unit from the server, handshake or record, is len u16 | bytes.
        while (buf.length >= 2) {
          // A refusal before the handshake is a plain GOAWAY frame: its u32 length starts 00 00.
          if (!conn && buf[0] === 0 && buf[1] === 0) throw new Error('chatd: refused (GOAWAY): retry later with backoff');
          const n = (buf[0] << 8) | buf[1];
          if (buf.length < 2 + n) break;
          const unit = buf.subarray(2, 2 + n);
          buf = buf.slice(2 + n);
          if (!conn) {
            hs.readMessage(unit);
            const key = hs.rs;
            if (pin && hex(key) !== (typeof pin === 'string' ? pin.toLowerCase() : hex(pin))) {
              throw new Error(`chatd: server key ${hex(key)} is not the pinned one`);
            }
            const m3 = hs.writeMessage();
            ws.send(concat(u16(m3.length), m3));
            conn = new Conn(ws, hs.session());
            resolve(conn);
          } else {
            conn._record(unit);
          }
        }
      } catch (err) {
        fail(err);
      }
    };
  });
}

// Conn is an open connection: send(frame bytes), and onframe(frame bytes)
// for each frame the server sends; onclose(err) once.
export class Conn {
  constructor(ws, session) {
    this.ws = ws;
    this.session = session;
    this.serverKey = hex(session.remoteStatic);
    this.onframe = () => {};
    this.onclose = () => {};
    this.ended = false;
  }

  // send seals whole frames (one or more, at most 65,519 bytes) in a record.
  send(frames) {
    if (frames.length > MAX_RECORD_PLAINTEXT) throw new Error('chatd: frames over one record');
    const ct = this.session.send.encrypt(NO_AD, frames);
    this.ws.send(concat(u16(ct.length), ct));
  }

  close() { this.ws.close(1000); }

  _record(ct) {
    let p = this.session.recv.decrypt(NO_AD, ct); // throws on an altered record: the caller closes
    while (p.length > 0) {
      const len = new DataView(p.buffer, p.byteOffset).getUint32(0);
      this.onframe(p.slice(0, 4 + len));
      p = p.subarray(4 + len);
    }
  }

  _end(err) {
    if (this.ended) return;
    this.ended = true;
    this.onclose(err);
  }
}

// pingFrame and pongNonce: the smallest round trip (PROTOCOL.md, PING/PONG).
export function pingFrame(nonce) {
  const f = new Uint8Array(13);
  const dv = new DataView(f.buffer);
  dv.setUint32(0, 9);
  f[4] = 0x40;
  dv.setBigUint64(5, BigInt(nonce));
  return f;
}

export function pongNonce(frame) {
  return frame[4] === 0x41 ? new DataView(frame.buffer, frame.byteOffset).getBigUint64(5) : null;
}
