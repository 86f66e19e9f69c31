// The end-to-end layer (e2e/) against the Go implementation's frozen
// known-answer vectors in internal/e2e/*/testdata: the same inputs must
// give the same bytes, so the page and `chatd chat` interoperate.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { hex, unhex, Reader } from '../e2e/bytes.js';
import * as xeddsa from '../e2e/xeddsa.js';
import * as pqxdh from '../e2e/pqxdh.js';
import { State, kdfRK, kdfCK, messageKeys, DecryptError, OldMessageError, TooManySkippedError } from '../e2e/ratchet.js';
import { CONTENT, KIND, Session, marshalContent, marshalEnvelope, unmarshalContent, unmarshalEnvelope } from '../e2e/envelope.js';

const vector = (path) => JSON.parse(readFileSync(new URL(`../../internal/e2e/${path}`, import.meta.url), 'utf8'));
const te = new TextEncoder();
const td = new TextDecoder();

test('XEdDSA: Go signatures reproduced byte for byte and verified', () => {
  const vs = vector('xeddsa/testdata/xeddsa.json');
  assert.ok(vs.length >= 6);
  for (const v of vs) {
    assert.equal(hex(pqxdh.publicKey(unhex(v.private))), v.public);
    assert.equal(hex(xeddsa.sign(unhex(v.private), unhex(v.message), unhex(v.random))), v.signature);
    assert.ok(xeddsa.verify(unhex(v.public), unhex(v.message), unhex(v.signature)));
    const bad = unhex(v.signature);
    bad[5] ^= 1;
    assert.ok(!xeddsa.verify(unhex(v.public), unhex(v.message), bad), 'a changed R verified');
    assert.ok(!xeddsa.verify(unhex(v.public), te.encode('other'), unhex(v.signature)), 'another message verified');
  }
});

// The u values internal/e2e/xeddsa's TestLowOrderPublicKeysRefused uses:
// small order, and p-1, p, p+1.
const SMALL_U = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
];

test('XEdDSA: strict checks refuse what the Go verifier refuses', () => {
  for (const u of SMALL_U) {
    assert.ok(!xeddsa.validPublicKey(unhex(u)), `u ${u} accepted`);
    // s = 0 with the identity as R: a lax verifier accepts it under a small-order key.
    const identity = new Uint8Array(64);
    identity[0] = 1;
    assert.ok(!xeddsa.verify(unhex(u), te.encode('m'), identity));
  }
  const v = vector('xeddsa/testdata/xeddsa.json')[1];
  const pub = unhex(v.public);
  const top = Uint8Array.from(pub);
  top[31] |= 0x80;
  assert.ok(!xeddsa.verify(top, unhex(v.message), unhex(v.signature)), 'top bit set verified');
  // s + l is the same scalar mod l; only the reduced one may verify.
  const L = 7237005577332262213973186563042994240857116359379907606001950938285454250989n;
  const sig = unhex(v.signature);
  let s = 0n;
  for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i]);
  s += L;
  for (let i = 32; i < 64; i++) {
    sig[i] = Number(s & 0xffn);
    s >>= 8n;
  }
  assert.ok(!xeddsa.verify(pub, unhex(v.message), sig), 's >= l verified');
  // A u on the twist (2 is not the u of a curve point) is refused.
  assert.ok(!xeddsa.validPublicKey(Uint8Array.of(2, ...new Uint8Array(31))));
  assert.ok(xeddsa.validPublicKey(Uint8Array.of(9, ...new Uint8Array(31))), 'the base point refused');
});

test('XEdDSA: a fresh signature verifies', () => {
  const priv = crypto.getRandomValues(new Uint8Array(32));
  const sig = xeddsa.sign(priv, te.encode('x'), crypto.getRandomValues(new Uint8Array(64)));
  assert.ok(xeddsa.verify(pqxdh.publicKey(priv), te.encode('x'), sig));
});

test('PQXDH: Go handshakes reproduced (bundle, initial message, SK, AD) on both sides', () => {
  const vs = vector('pqxdh/testdata/pqxdh.json');
  assert.equal(vs.length, 2);
  for (const v of vs) {
    const b = pqxdh.unmarshalBundle(unhex(v.bundle));
    assert.equal(hex(pqxdh.marshalBundle(b)), v.bundle);
    assert.equal(hex(pqxdh.kemKeyPair(unhex(v.bob_kem_seed)).publicKey), hex(b.kem.key));
    const { initial, secret } = pqxdh.initiate(unhex(v.alice_identity_private), b,
      unhex(v.alice_ephemeral_private), unhex(v.encaps_random));
    assert.equal(hex(pqxdh.marshalInitial(initial)), v.initial_message);
    assert.equal(hex(secret.sharedKey), v.shared_key);
    assert.equal(hex(secret.ad), v.associated_data);
    const m = pqxdh.readInitial(new Reader(unhex(v.initial_message), 'initial'));
    const bob = pqxdh.respond(unhex(v.bob_identity_private), { id: b.signed.id, priv: unhex(v.bob_spk_private) },
      b.oneTime ? { id: b.oneTime.id, priv: unhex(v.bob_opk_private) } : null,
      { id: b.kem.id, seed: unhex(v.bob_kem_seed) }, m);
    assert.equal(hex(bob.sharedKey), v.shared_key);
    assert.equal(hex(bob.ad), v.associated_data);

    // A forged signature on either signed key aborts the handshake.
    for (const field of ['signed', 'kem']) {
      const forged = pqxdh.unmarshalBundle(unhex(v.bundle));
      forged[field].sig[10] ^= 1;
      assert.throws(() => pqxdh.initiate(unhex(v.alice_identity_private), forged), pqxdh.BadSignatureError);
    }
    // A one-time key of small order gives an all-zero agreement: refused.
    if (b.oneTime) {
      const low = pqxdh.unmarshalBundle(unhex(v.bundle));
      low.oneTime.key = unhex(SMALL_U[0]);
      assert.throws(() => pqxdh.initiate(unhex(v.alice_identity_private), low), pqxdh.BadKeyError);
    }
  }
});

test('ratchet: KDF chain vector (kdf.json)', () => {
  const v = vector('ratchet/testdata/kdf.json');
  let [rk, ck] = kdfRK(unhex(v.root_key), unhex(v.dh_output));
  assert.equal(hex(rk), v.new_root_key);
  assert.equal(hex(ck), v.chain_key_0);
  for (const step of v.chain) {
    const [next, mk] = kdfCK(ck);
    const k = messageKeys(mk);
    assert.equal(hex(mk), step.message_key);
    assert.equal(hex(k.key), step.aead_key);
    assert.equal(hex(k.nonce), step.nonce);
    assert.equal(hex(next), step.next_chain_key);
    ck = next;
  }
});

// replay rebuilds conversation.json from conversation_inputs.json.
function pair() {
  const inp = vector('ratchet/testdata/conversation_inputs.json');
  const keys = inp.ratchet_keys_in_draw_order.map(unhex);
  const draw = () => {
    assert.ok(keys.length, 'more ratchet keys drawn than the Go side drew');
    return keys.shift();
  };
  const spk = unhex(inp.bob_signed_prekey_private);
  return {
    alice: State.alice(unhex(inp.shared_key), unhex(inp.associated_data), pqxdh.publicKey(spk), draw),
    bob: State.bob(unhex(inp.shared_key), unhex(inp.associated_data), spk, draw),
    keys,
  };
}

test('ratchet: the whole Go conversation, messages and final states byte for byte', () => {
  const conv = vector('ratchet/testdata/conversation.json');
  let { alice: a, bob: b, keys } = pair();
  const M = conv.messages;
  const enc = (s, i) => {
    const m = s.encrypt(te.encode(M[i].plaintext));
    assert.equal(hex(m), M[i].message, `message ${i}`);
    return m;
  };
  const dec = (s, m, i) => {
    const r = s.decrypt(m);
    assert.equal(td.decode(r.plaintext), M[i].plaintext);
    return r.state;
  };
  const m1 = enc(a, 0);
  const m2 = enc(a, 1);
  b = dec(b, m2, 1); // m1 is late
  const m3 = enc(b, 2);
  b = dec(b, m1, 0);
  a = dec(a, m3, 2);
  const m4 = enc(a, 3);
  b = dec(b, m4, 3);
  const m5 = enc(b, 4);
  a = dec(a, m5, 4);
  assert.equal(hex(a.marshal()), conv.alice_final_state);
  assert.equal(hex(b.marshal()), conv.bob_final_state);
  assert.equal(keys.length, 0, 'fewer ratchet keys drawn than the Go side drew');
  for (const s of [conv.alice_final_state, conv.bob_final_state]) {
    assert.equal(hex(State.unmarshal(unhex(s)).marshal()), s);
  }
});

test('ratchet: failures leave the state unchanged; replays and MaxSkip refused', () => {
  const conv = vector('ratchet/testdata/conversation.json');
  const { bob } = pair();
  const m1 = unhex(conv.messages[0].message);
  const before = hex(bob.marshal());
  const tampered = Uint8Array.from(m1);
  tampered[45] ^= 1;
  assert.throws(() => bob.decrypt(tampered), DecryptError);
  assert.equal(hex(bob.marshal()), before);
  const { state } = bob.decrypt(m1);
  assert.throws(() => state.decrypt(m1), OldMessageError);
  assert.throws(() => bob.decrypt(m1.subarray(0, 55)), /malformed/);
  const far = Uint8Array.from(m1);
  new DataView(far.buffer).setUint32(36, 1001);
  assert.throws(() => bob.decrypt(far), TooManySkippedError);
  assert.equal(hex(bob.marshal()), before);
});

test('envelope and Content: the Go examples parse and re-encode byte for byte', () => {
  const vs = vector('envelope/testdata/envelope.json');
  const kinds = {};
  for (const v of vs) {
    if (v.kind === 'content') {
      const c = unmarshalContent(unhex(v.envelope));
      assert.equal(c.type, CONTENT.BODY);
      assert.equal(td.decode(c.body), 'hi');
      assert.equal(hex(marshalContent(CONTENT.BODY, te.encode('hi'))), v.envelope);
      continue;
    }
    const e = unmarshalEnvelope(unhex(v.envelope));
    kinds[v.kind] = e.kind;
    assert.equal(hex(marshalEnvelope(e)), v.envelope);
  }
  assert.deepEqual(kinds, { prekey: KIND.PREKEY, ratchet: KIND.RATCHET, 'sender-key': KIND.SENDER_KEY });
  const c = marshalContent(CONTENT.BODY, te.encode('d'));
  assert.throws(() => unmarshalContent(new Uint8Array([...c, ...new Uint8Array(64)])), /padding/);
  assert.throws(() => unmarshalContent(c.subarray(0, c.length - 1)), /padding/);
  const nz = Uint8Array.from(c);
  nz[63] = 1;
  assert.throws(() => unmarshalContent(nz), /non-zero/);
  assert.throws(() => unmarshalEnvelope(Uint8Array.of(2, 2, ...new Uint8Array(56))), /version/);
  assert.throws(() => unmarshalEnvelope(Uint8Array.of(1, 9, ...new Uint8Array(56))), /kind/);
});

test('session: start, accept, both ways, prekey envelopes until the first reply', () => {
  const aliceIK = crypto.getRandomValues(new Uint8Array(32));
  const bobIK = crypto.getRandomValues(new Uint8Array(32));
  const spk = crypto.getRandomValues(new Uint8Array(32));
  const opk = crypto.getRandomValues(new Uint8Array(32));
  const seed = crypto.getRandomValues(new Uint8Array(64));
  const kemPub = pqxdh.kemKeyPair(seed).publicKey;
  const bundle = {
    identity: pqxdh.publicKey(bobIK),
    signed: { id: 1, key: pqxdh.publicKey(spk), sig: pqxdh.signPreKey(bobIK, 'ec', pqxdh.publicKey(spk)) },
    oneTime: { id: 2, key: pqxdh.publicKey(opk) },
    kem: { id: 3, key: kemPub, sig: pqxdh.signPreKey(bobIK, 'kem', kemPub) },
  };
  const a = Session.start(aliceIK, bundle);
  const e1 = a.seal(CONTENT.BODY, te.encode('one'));
  const e2 = a.seal(CONTENT.BODY, te.encode('two'));
  assert.equal(e1[1], KIND.PREKEY);
  const keys = { signed: (id) => id === 1 && { id, priv: spk }, oneTime: (id) => id === 2 && { id, priv: opk },
    kem: (id) => id === 3 && { id, seed } };
  const { session: b, content } = Session.accept(bobIK, keys, e2); // the second arrives first
  assert.equal(td.decode(content.body), 'two');
  assert.equal(td.decode(b.open(e1).body), 'one');
  const r = b.seal(CONTENT.BODY, te.encode('back'));
  assert.equal(r[1], KIND.RATCHET);
  const a2 = Session.unmarshal(a.marshal());
  assert.equal(td.decode(a2.open(r).body), 'back');
  assert.equal(a2.seal(CONTENT.BODY, te.encode('x'))[1], KIND.RATCHET, 'still prekey after a reply opened');
  const before = hex(b.marshal());
  assert.throws(() => b.open(r)); // its own message: no key opens it
  assert.equal(hex(b.marshal()), before);
});

test('sender keys: the Go chain reproduced (distribution, messages) and opened out of order', async () => {
  const { Sender, Receiver, marshalDistribution, unmarshalDistribution } = await import('../e2e/senderkey.js');
  const v = vector('senderkey/testdata/senderkey.json');
  const s = new Sender(unhex(v.distribution_id), v.chain_id, unhex(v.chain_key), unhex(v.signing_seed));
  assert.equal(hex(marshalDistribution(s.distribution())), v.distribution);
  const d = unmarshalDistribution(unhex(v.distribution));
  v.plaintexts.forEach((pt, i) => assert.equal(hex(s.encrypt(te.encode(pt))), v.messages[i], `message ${i}`));
  let r = Receiver.from(d);
  const order = [2, 0, 1];
  for (const i of order) {
    const out = r.decrypt(unhex(v.messages[i]));
    assert.equal(td.decode(out.plaintext), v.plaintexts[i]);
    r = out.receiver;
  }
  assert.equal(hex(Receiver.unmarshal(r.marshal()).marshal()), hex(r.marshal()));
  assert.throws(() => r.decrypt(unhex(v.messages[0])), /already used/);
  const forged = unhex(v.messages[1]);
  forged[30] ^= 1;
  const before = hex(Receiver.from(d).marshal());
  const fresh = Receiver.from(d);
  assert.throws(() => fresh.decrypt(forged), /signature/);
  assert.equal(hex(fresh.marshal()), before);
  const again = Sender.unmarshal(s.marshal());
  assert.equal(hex(again.marshal()), hex(s.marshal()));
  again.rotate();
  assert.notEqual(again.chain, s.chain);
  const r2 = Receiver.from(d);
  r2.process(again.distribution());
  assert.equal(td.decode(r2.decrypt(again.encrypt(te.encode('after rotation'))).plaintext), 'after rotation');
});
