import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Handshake, keyPair } from '../noise.js';
import { sealRecord, RecordReader } from '../transport.js';
import { noiseVectors, toHex } from './spec.js';

const v = noiseVectors();
const get = (k) => {
  assert.ok(v.has(k), `PROTOCOL.md §8 has no vector "${k}"`);
  return v.get(k);
};
const u16 = (msg) => {
  const n = (msg[0] << 8) | msg[1];
  assert.equal(n, msg.length - 2, 'vector length prefix');
  return msg.subarray(2);
};

// Both roles run the vector handshake with its fixed keys; every message
// and record must come out byte for byte as PROTOCOL.md prints it.
test('Noise XX reproduces PROTOCOL.md §8', () => {
  const prologue = get('preamble = prologue');
  const serverS = keyPair(get('server static private'));
  assert.equal(toHex(serverS.pub), toHex(get('server static public')));
  const client = new Handshake({ initiator: true, prologue,
    s: keyPair(get('client static private')), e: keyPair(get('client ephemeral private')) });
  const server = new Handshake({ initiator: false, prologue, s: serverS,
    e: keyPair(get('server ephemeral private')) });

  const m1 = client.writeMessage();
  assert.equal(toHex(m1), toHex(u16(get('-> e (len + message)'))));
  assert.equal(server.readMessage(m1).length, 0);
  const m2 = server.writeMessage();
  assert.equal(toHex(m2), toHex(u16(get('<- e, ee, s, es'))));
  assert.equal(client.readMessage(m2).length, 0);
  assert.equal(toHex(client.remoteStatic), toHex(serverS.pub), 'client sees the server key to pin');
  const m3 = client.writeMessage();
  assert.equal(toHex(m3), toHex(u16(get('-> s, se'))));
  server.readMessage(m3);

  const c = client.split();
  const s = server.split();
  const ping = sealRecord(c.send, get('PING frame (plaintext)'));
  assert.equal(toHex(ping), toHex(get('record: PING from client')));
  const pong = sealRecord(s.send, get('PONG frame (plaintext)'));
  assert.equal(toHex(pong), toHex(get('record: PONG from server')));

  // And the client opens the server's record through the record reader.
  const rr = new RecordReader();
  rr.push(pong.subarray(0, 5));
  assert.equal(rr.next(), null, 'half a record is not a record');
  rr.push(pong.subarray(5));
  assert.equal(toHex(c.recv.decrypt(new Uint8Array(0), rr.next())), toHex(get('PONG frame (plaintext)')));
});

test('an altered record does not open', () => {
  const prologue = get('preamble = prologue');
  const client = new Handshake({ initiator: true, prologue });
  const server = new Handshake({ initiator: false, prologue });
  server.readMessage(client.writeMessage());
  client.readMessage(server.writeMessage());
  server.readMessage(client.writeMessage());
  const c = client.split();
  const s = server.split();
  const rec = sealRecord(c.send, Uint8Array.of(0, 0, 0, 9, 0x40, 1, 2, 3, 4, 5, 6, 7, 8));
  rec[rec.length - 1] ^= 1;
  assert.throws(() => s.recv.decrypt(new Uint8Array(0), rec.subarray(2)));
});

test('a changed prologue fails the handshake', () => {
  const client = new Handshake({ initiator: true, prologue: Uint8Array.of(1) });
  const server = new Handshake({ initiator: false, prologue: Uint8Array.of(2) });
  server.readMessage(client.writeMessage());
  assert.throws(() => client.readMessage(server.writeMessage()));
});
