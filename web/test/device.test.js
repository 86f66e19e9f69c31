// The page's device: key batches, pinning, sessions per contact, and the
// safety number, against a directory simulated as section 11 describes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Device, NoSessionError, UnacceptedError, safetyNumber } from '../e2e/device.js';
import { encode, decode } from '../codec.js';
import * as xeddsa from '../e2e/xeddsa.js';
import { encodeEC, encodeKEM } from '../e2e/pqxdh.js';

const te = new TextEncoder();
const td = new TextDecoder();

// publish uploads a device's keys through the codec (so the frames are
// well-formed) and returns a fetch function that takes keys as the
// server does: the lowest-id one-time keys, each once, then last resort.
function publish(dev) {
  const ups = dev.uploads({ longLived: true, oneTime: true });
  const dir = { ec: [], kem: [] };
  for (const up of ups) {
    const f = decode(encode('KEYS_UPLOAD', { req: 1, ...up }));
    for (const k of [f.signed, f.lastResort, ...f.kem].filter(Boolean)) {
      const msg = k.key.length === 32 ? encodeEC(k.key) : encodeKEM(k.key);
      assert.ok(xeddsa.verify(f.identity, msg, k.sig), 'the directory would refuse a signature (ERROR 80)');
    }
    if (f.signed) Object.assign(dir, { identity: f.identity, signed: f.signed, last: f.lastResort });
    dir.ec.push(...f.ec);
    dir.kem.push(...f.kem);
  }
  return () => ({ device: 1, identity: dir.identity, signed: dir.signed, oneTime: dir.ec.shift() ?? null,
    kem: dir.kem.shift() ?? dir.last });
}

test('a first upload is one frame of 100 EC and 10 KEM keys, 21,743 bytes as PROTOCOL.md says', () => {
  const d = new Device();
  const ups = d.uploads({ longLived: true, oneTime: true });
  assert.equal(ups.length, 1);
  assert.equal(encode('KEYS_UPLOAD', { req: 1, ...ups[0] }).length, 21743); // len included
  assert.deepEqual(d.oneTimeCounts(), { ec: 100, kem: 10 });
  assert.equal(d.digest().length, 32);
});

test('two devices talk both ways; one-time keys are used once; state survives JSON', () => {
  let alice = new Device();
  const bob = new Device();
  const fetchBob = publish(bob);
  assert.throws(() => alice.seal('2', te.encode('x')), NoSessionError);
  assert.equal(alice.startSession('2', fetchBob()), false);
  const e1 = alice.seal('2', te.encode('hello bob'));
  alice = new Device(JSON.parse(JSON.stringify(alice.data()))); // a reload
  const e2 = alice.seal('2', te.encode('again'));
  const o1 = bob.open('1', e1);
  assert.equal(td.decode(o1.body), 'hello bob');
  assert.equal(bob.oneTimeCounts().ec, 99, 'the one-time EC key was not deleted');
  assert.equal(bob.oneTimeCounts().kem, 9, 'the one-time KEM key was not deleted');
  assert.equal(td.decode(bob.open('1', e2).body), 'again');
  const before = JSON.stringify(bob.data());
  assert.throws(() => bob.open('1', e1)); // a replay
  assert.equal(JSON.stringify(bob.data()), before, 'a failed open changed the state');
  const r = bob.seal('1', te.encode('hi alice'));
  assert.equal(td.decode(alice.open('2', r).body), 'hi alice');
  assert.equal(alice.seal('2', te.encode('k'))[1], 2, 'still a prekey envelope after a reply');
});

test('both start at once: each keeps two sessions and they settle after a round trip', () => {
  const a = new Device();
  const b = new Device();
  const fa = publish(a);
  const fb = publish(b);
  a.startSession('2', fb());
  b.startSession('1', fa());
  const ea = a.seal('2', te.encode('from a'));
  const eb = b.seal('1', te.encode('from b'));
  assert.equal(td.decode(b.open('1', ea).body), 'from a');
  assert.equal(td.decode(a.open('2', eb).body), 'from b');
  assert.equal(td.decode(b.open('1', a.seal('2', te.encode('x'))).body), 'x');
  assert.equal(td.decode(a.open('2', b.seal('1', te.encode('y'))).body), 'y');
});

test('a changed identity key is pinned against: sending waits for accept', () => {
  const a = new Device();
  const fb = publish(new Device());
  a.startSession('2', fb());
  const fb2 = publish(new Device()); // bob reinstalled
  assert.equal(a.startSession('2', fb2()), true);
  assert.throws(() => a.seal('2', te.encode('x')), UnacceptedError);
  assert.ok(a.accept('2'));
  a.seal('2', te.encode('x'));
});

test('a forged bundle signature is refused and nothing is stored', () => {
  const a = new Device();
  const b = publish(new Device())();
  b.signed = { ...b.signed, sig: Uint8Array.from(b.signed.sig, (x, i) => (i === 3 ? x ^ 1 : x)) };
  assert.throws(() => a.startSession('2', b), /signature/);
  assert.deepEqual(a.data().sessions, {});
  assert.deepEqual(a.data().peers, {});
});

test('safety number: the Go value for keys {1}, {2} of users 1 and 2', () => {
  const k = (b) => Uint8Array.of(b, ...new Uint8Array(31));
  const want = '42222 38428 51906 04846 55120 89149 88687 11999 34634 81846 49632 75237';
  assert.equal(safetyNumber(1n, k(1), 2n, k(2)), want);
  assert.equal(safetyNumber(2n, k(2), 1n, k(1)), want);
});

test('groups: distributions over 1:1 sessions, one ciphertext for all, rotation on removal', () => {
  const [a, b, c] = [new Device(), new Device(), new Device()];
  const ids = { a: '1', b: '2', c: '3' };
  const fb = publish(b);
  const fc = publish(c);
  a.startSession(ids.b, fb());
  a.startSession(ids.c, fc());
  const group = '77';
  const send = (text) => {
    const controls = a.needKey(group, [ids.b, ids.c]).map((u) => [u, a.sealDistribution(group, u)]);
    return { controls, body: a.sealGroup(group, te.encode(text)) };
  };
  const first = send('hello group');
  assert.equal(first.controls.length, 2);
  assert.equal(first.body[1], 3, 'not a sender-key envelope');
  for (const [u, body] of first.controls) {
    const o = (u === ids.b ? b : c).open(ids.a, body);
    assert.ok(o.control);
    assert.equal(o.group, group);
  }
  assert.throws(() => c.openGroup(group, ids.b, first.body), /no sender key/);
  assert.equal(td.decode(b.openGroup(group, ids.a, first.body)), 'hello group');
  assert.equal(td.decode(c.openGroup(group, ids.a, first.body)), 'hello group');
  assert.equal(send('no new distribution').controls.length, 0);

  a.membersRemoved(group, [ids.c]);
  const after = send('c is gone');
  assert.deepEqual(after.controls.map(([u]) => u).sort(), [ids.b, ids.c], 'the caller filters members; needKey lists everyone after a rotation');
  b.open(ids.a, after.controls.find(([u]) => u === ids.b)[1]);
  assert.equal(td.decode(b.openGroup(group, ids.a, after.body)), 'c is gone');
  assert.throws(() => c.openGroup(group, ids.a, after.body), /unknown sender chain/, 'the removed member read a message after the rotation');
});
