// The page (app.js) against a fake server in this process: a stub DOM,
// an in-memory localStorage, and a WebSocket whose other end runs the
// Noise XX responder (noise.js) and answers frames as a test says. It
// checks what only the page decides: OPTIONS after every WELCOME and
// before the resends, SENT_DELIVERED taken as SENT and a delivered
// receipt, and a server that does not know OPTIONS (PROTOCOL.md §3).
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Handshake, keyPair } from '../noise.js';
import { encode, splitFrames, FLAG_DUP } from '../codec.js';
import { PREAMBLE, RecordReader, sealRecord } from '../transport.js';
import { Device } from '../e2e/device.js';
import { concat } from '../e2e/bytes.js';
import { toHex } from './spec.js';

const EMPTY = new Uint8Array(0);
const WS_URL = 'ws://fake.test/chatd';
const serverStatic = keyPair(new Uint8Array(32).fill(7));
const ZERO_ID = new Uint8Array(16);

// ---- the page's world: localStorage, a DOM that takes anything --------

const mem = new Map();
globalThis.localStorage = {
  getItem: (k) => (mem.has(k) ? mem.get(k) : null),
  setItem: (k, v) => mem.set(k, String(v)),
  removeItem: (k) => mem.delete(k),
};

function element() {
  const kids = new Map();
  return {
    textContent: '', hidden: false, className: '', dataset: {}, innerHTML: '', value: '', checked: false,
    replaceChildren() {}, append() {}, addEventListener() {},
    querySelector(sel) {
      if (!kids.has(sel)) kids.set(sel, element());
      return kids.get(sel);
    },
  };
}
const dom = element();
globalThis.document = { querySelector: (sel) => dom.querySelector(sel), createElement: element,
  addEventListener() {}, hidden: false };
globalThis.location = { protocol: 'http:', host: 'fake.test',
  search: `?ws=${encodeURIComponent(WS_URL)}&key=${toHex(serverStatic.pub)}` };
globalThis.window = globalThis;

const withLen16 = (m) => concat(Uint8Array.of(m.length >> 8, m.length & 0xff), m);

// ---- the fake server ----------------------------------------------------

// Conn is the server's end of one WebSocket: it completes the handshake,
// records the frames the page sends, and answers them through on (type
// -> handler(frame, conn)), falling back to what a server answers.
class Conn {
  constructor(ws, on) {
    this.ws = ws;
    this.on = on;
    this.frames = [];
    this.hs = new Handshake({ initiator: false, prologue: PREAMBLE, s: serverStatic });
    this.rr = new RecordReader();
    this.preamble = false;
    this.cipher = null;
    this.closed = false;
  }

  receive(data) {
    if (!this.preamble) {
      assert.equal(toHex(data.subarray(0, 8)), toHex(PREAMBLE));
      data = data.subarray(8);
      this.preamble = true;
    }
    this.rr.push(data);
    for (let unit = this.rr.next(); unit; unit = this.rr.next()) {
      if (this.cipher) {
        for (const f of splitFrames(this.cipher.recv.decrypt(EMPTY, unit))) this.frame(f);
      } else if (!this.sentM2) {
        this.hs.readMessage(unit);
        this.sentM2 = true;
        this.toPage(withLen16(this.hs.writeMessage()));
      } else {
        this.hs.readMessage(unit);
        this.cipher = this.hs.split();
      }
    }
  }

  frame(f) {
    this.frames.push(f);
    const h = this.on[f.type] ?? DEFAULT[f.type];
    h?.(f, this);
  }

  push(...frames) {
    if (this.closed) return;
    this.toPage(sealRecord(this.cipher.send, concat(...frames.map((f) => encode(f.type, f)))));
  }

  toPage(bytes) {
    setImmediate(() => !this.closed && this.ws.onmessage?.({ data: bytes.slice().buffer }));
  }

  // close ends the connection from the server's side, after what it pushed.
  close() {
    setImmediate(() => {
      if (this.closed) return;
      this.closed = true;
      this.ws.onclose?.({ code: 1000, reason: '' });
    });
  }

  types() {
    return this.frames.map((f) => f.type);
  }
}

const DEFAULT = {
  RESUME: (f, c) => c.push({ type: 'WELCOME', user: 1n, token: new Uint8Array(32).fill(9), keepalive: 180,
    window: 64, maxBody: 65000, time: BigInt(Date.now()) }),
  KEYS_CHECK: (f, c) => c.push({ type: 'OK', req: f.req }),
  GROUP_LIST: (f, c) => c.push({ type: 'GROUPS', req: f.req, groups: [] }),
  LOOKUP: (f, c) => c.push({ type: 'USER', req: f.req, user: f.user, name: `user${f.user}` }),
};

let conns = [];
let on = {};
globalThis.WebSocket = class {
  constructor(url) {
    assert.equal(url, WS_URL);
    this.conn = new Conn(this, on);
    conns.push(this.conn);
    setImmediate(() => this.onopen?.());
  }

  send(data) {
    const b = Uint8Array.from(data);
    setImmediate(() => !this.conn.closed && this.conn.receive(b));
  }

  close() {
    this.conn.closed = true;
  }
};

// ---- helpers --------------------------------------------------------------

const device = new Device(); // keys made once: every test's page has published them
device.data().published = true;
const e2e = JSON.stringify(device.data());

const hexID = (n) => n.toString(16).padStart(32, '0');
const unhex = (s) => Uint8Array.from(s.match(/../g), (b) => parseInt(b, 16));

// start loads a fresh copy of the page, logged in before (a session to
// RESUME), with msgs waiting for SENT in its chat with user 2 and controls
// (sender-key distributions) likewise.
let loads = 0;
let app = null;
async function start({ handlers = {}, msgs = [], controls = [] } = {}) {
  mem.clear();
  conns = [];
  on = handlers;
  const key = `chatd.store.${WS_URL}.1`;
  localStorage.setItem(`chatd.session.${WS_URL}`, JSON.stringify({ name: 'alice', user: '1', token: 'ab'.repeat(32) }));
  localStorage.setItem(key, JSON.stringify({
    names: { 1: 'alice', 2: 'bob' }, groups: {},
    chats: { 'u:2': msgs.map((id, i) => ({ id, from: '1', to: '2', group: false, time: i + 1, body: `m${i}`,
      out: true, state: 'pending', sealed: 'c0ffee' })) },
    lastSeq: '0', ackedSeq: '0', e2e: JSON.parse(e2e), controls: controls.map((id) => ({ id, to: '3', sealed: 'beef' })),
  }));
  await import(`../app.js?load=${++loads}`);
  app = window.chatd;
  return app;
}

afterEach(() => {
  // Stop the page: no reconnect, no ping timer left running.
  app.stopped = true;
  app.link?.close();
});

async function until(what, cond, ms = 10000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sends = (c) => c.frames.filter((f) => f.type === 'SEND');
const stored = () => JSON.parse(localStorage.getItem(`chatd.store.${WS_URL}.1`));

// ---- tests ----------------------------------------------------------------

test('OPTIONS follows every WELCOME before the resends, and SENT_DELIVERED is SENT and ✓✓', async () => {
  const m = hexID(0xa1);
  const ctl = hexID(0xc1);
  await start({
    msgs: [m], controls: [ctl],
    handlers: {
      OPTIONS: (f, c) => c.push({ type: 'OK', req: f.req }),
    },
  });
  const c = () => conns[0];
  await until('the resends', () => sends(c()).length === 2);
  const types = c().types();
  assert.equal(types[0], 'RESUME');
  assert.equal(types[1], 'OPTIONS', `the first frame after WELCOME: ${types}`);
  const opt = c().frames[1];
  assert.equal(opt.flags, 1, 'bit 0: SENT_DELIVERED');
  assert.ok(types.indexOf('SEND') > 1, 'resends come after OPTIONS');
  assert.deepEqual(sends(c()).map((f) => [toHex(f.id), f.flags & FLAG_DUP]), [[ctl, FLAG_DUP], [m, FLAG_DUP]]);
  await until('the OK settled', () => app.options === 0);
  assert.equal(app.waiting.has(opt.req), false);

  c().push({ type: 'SENT_DELIVERED', id: unhex(ctl), time: 900n, delivered: 950n },
    { type: 'SENT_DELIVERED', id: unhex(m), time: 1000n, delivered: 1234n });
  await until('✓✓', () => app.store.outgoing(m).state === 'delivered');
  const got = app.store.outgoing(m);
  assert.equal(got.time, 1000, "the SENT's time, as for SENT");
  assert.equal(got.deliveredTo, undefined, 'a 1:1 receipt names nobody, as a RECEIPT with group 0');
  assert.deepEqual(app.store.controls, [], 'a distribution answered SENT_DELIVERED is done with');
  const saved = stored();
  assert.equal(saved.chats['u:2'][0].state, 'delivered', 'stored');
  assert.deepEqual(saved.controls, []);
  await sleep(50); // past the ACK delay
  assert.ok(!c().types().includes('ACK'), 'SENT_DELIVERED has no seq: nothing to acknowledge');
  assert.equal(dom.querySelector('#flash').textContent, '');

  // A second connection (the server went away) asks again.
  c().close();
  await until('the reconnect', () => conns.length === 2 && conns[1].types().includes('OPTIONS'));
  assert.deepEqual(conns[1].types().slice(0, 2), ['RESUME', 'OPTIONS']);
});

test('ERROR 33 to OPTIONS is swallowed, and SENT then a RECEIPT entry still tick', async () => {
  const m = hexID(0xa2);
  await start({
    msgs: [m],
    handlers: {
      OPTIONS: (f, c) => c.push({ type: 'ERROR', code: 33, req: f.req, id: ZERO_ID, detail: 'OPTIONS: unknown option bits set' }),
      SEND: (f, c) => c.push({ type: 'SENT', id: f.id, time: 1000n },
        { type: 'RECEIPT', seq: 7n, kind: 1, by: 2n, group: 0n, time: 1100n, ids: [f.id] }),
    },
  });
  const c = conns[0];
  await until('✓✓', () => app.store.outgoing(m).state === 'delivered');
  assert.equal(app.options, 0);
  await until('the ACK of the receipt', () => c.types().includes('ACK'));
  assert.equal(c.frames.find((f) => f.type === 'ACK').seq, 7n);
  assert.equal(dom.querySelector('#flash').textContent, '', 'no error shown');
  assert.equal(app.link.closed, false);
  assert.equal(app.noOptions, false, 'a server that knows OPTIONS is asked again next time');
});

test('a server older than OPTIONS closes with ERROR 3: the page reconnects and asks no more', async () => {
  const m = hexID(0xa3);
  await start({
    msgs: [m],
    handlers: {
      OPTIONS: (f, c) => {
        c.push({ type: 'ERROR', code: 3, req: 0, id: ZERO_ID, detail: 'unexpected frame 0x44' });
        c.close();
      },
      SEND: (f, c) => c.push({ type: 'SENT', id: f.id, time: 1000n }),
    },
  });
  await until('the closed first connection', () => conns[0].closed);
  await until('the reconnect (1 to 2 s of backoff)', () => conns.length === 2 && sends(conns[1]).length === 1);
  assert.equal(app.noOptions, true);
  assert.ok(!conns[1].types().includes('OPTIONS'), `second connection sent ${conns[1].types()}`);
  assert.equal(sends(conns[1])[0].flags & FLAG_DUP, FLAG_DUP);
  await until('✓', () => app.store.outgoing(m).state === 'sent');
  assert.equal(dom.querySelector('#flash').textContent, '', 'no error shown for the expected ERROR 3');

  // And not on later connections of this page either.
  conns[1].close();
  await until('a third connection', () => conns.length === 3 && conns[2].types().includes('KEYS_CHECK'));
  assert.ok(!conns[2].types().includes('OPTIONS'));
});
