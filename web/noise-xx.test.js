// Reproduces PROTOCOL.md section 8's vectors byte for byte, read from the
// document itself so the two cannot drift apart: `npm test` in web/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Handshake } from './noise-xx.js';

const doc = readFileSync(new URL('../PROTOCOL.md', import.meta.url), 'utf8');
const block = doc.split('<!-- noise-vectors:begin -->')[1].split('<!-- noise-vectors:end -->')[0];
const v = {};
for (const line of block.split('\n')) {
  const m = line.match(/^(.+?)\s{2,}([0-9a-f]+)$/);
  if (m) v[m[1].trim()] = Uint8Array.from(Buffer.from(m[2], 'hex'));
}
const hex = (b) => Buffer.from(b).toString('hex');
const withLen = (b) => { const o = new Uint8Array(2 + b.length); new DataView(o.buffer).setUint16(0, b.length); o.set(b, 2); return o; };

test('PROTOCOL.md XX vectors, both roles', () => {
  assert.ok(v['-> e (len + message)'], 'vectors not found in PROTOCOL.md');
  const prologue = v['preamble = prologue'];
  const client = new Handshake({ initiator: true, prologue,
    staticPriv: v['client static private'], ephemeralPriv: v['client ephemeral private'] });
  const server = new Handshake({ initiator: false, prologue,
    staticPriv: v['server static private'], ephemeralPriv: v['server ephemeral private'] });
  assert.equal(hex(server.s.pub), hex(v['server static public']));

  const m1 = client.writeMessage();
  assert.equal(hex(withLen(m1)), hex(v['-> e (len + message)']));
  server.readMessage(m1);
  const m2 = server.writeMessage();
  assert.equal(hex(withLen(m2)), hex(v['<- e, ee, s, es']));
  client.readMessage(m2);
  assert.equal(hex(client.rs), hex(v['server static public']), 'the pin check a client makes');
  const m3 = client.writeMessage();
  assert.equal(hex(withLen(m3)), hex(v['-> s, se']));
  server.readMessage(m3);

  const c = client.session(), s = server.session();
  const ping = c.send.encrypt(new Uint8Array(0), v['PING frame (plaintext)']);
  assert.equal(hex(withLen(ping)), hex(v['record: PING from client']));
  assert.equal(hex(s.recv.decrypt(new Uint8Array(0), ping)), hex(v['PING frame (plaintext)']));
  const pong = s.send.encrypt(new Uint8Array(0), v['PONG frame (plaintext)']);
  assert.equal(hex(withLen(pong)), hex(v['record: PONG from server']));
  assert.equal(hex(c.recv.decrypt(new Uint8Array(0), pong)), hex(v['PONG frame (plaintext)']));
});

test('an altered record does not open', () => {
  const prologue = v['preamble = prologue'];
  const a = new Handshake({ initiator: true, prologue });
  const b = new Handshake({ initiator: false, prologue });
  b.readMessage(a.writeMessage());
  a.readMessage(b.writeMessage());
  b.readMessage(a.writeMessage());
  const ct = a.session().send.encrypt(new Uint8Array(0), Uint8Array.of(1, 2, 3));
  ct[0] ^= 1;
  assert.throws(() => b.session().recv.decrypt(new Uint8Array(0), ct));
});
