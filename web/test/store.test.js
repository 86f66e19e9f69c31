import { test } from 'node:test';
import assert from 'node:assert/strict';

// The page's store on an in-memory localStorage.
const mem = new Map();
globalThis.localStorage = {
  getItem: (k) => (mem.has(k) ? mem.get(k) : null),
  setItem: (k, v) => mem.set(k, String(v)),
  removeItem: (k) => mem.delete(k),
};
const { Store, pins } = await import('../store.js');

test('an entry pushed again is stored once (dedup by from and id)', () => {
  const s = new Store('ws://x/chatd', '1');
  const m = { id: 'aa', from: '2', time: 5, body: 'hi' };
  assert.equal(s.add('u:2', { ...m }), true);
  assert.equal(s.add('u:2', { ...m }), false);
  assert.equal(s.add('u:2', { ...m, from: '3' }), true, 'ids are unique per sender only');
  assert.equal(s.chat('u:2').length, 2);
});

test('ticks never move backwards, and survive a reload', () => {
  const s = new Store('ws://x/chatd', '1');
  s.add('u:2', { id: 'bb', from: '1', to: '2', time: 1, body: 'x', out: true, state: 'pending' });
  assert.equal(s.pending().length, 1);
  s.advance('bb', 'read');
  s.advance('bb', 'sent'); // a late SENT after the read receipt
  s.advance('bb', 'delivered');
  assert.equal(s.outgoing('bb').state, 'read');
  assert.equal(s.pending().length, 0);
  s.flush();
  assert.equal(new Store('ws://x/chatd', '1').outgoing('bb').state, 'read');
  assert.equal(new Store('ws://x/chatd', '9').outgoing('bb'), null, 'each user has their own store');
});

test('a group message records who has it', () => {
  const s = new Store('ws://x/chatd', '1');
  s.add('g:9', { id: 'cc', from: '1', to: '9', group: true, time: 1, body: 'x', out: true, state: 'sent' });
  s.advance('cc', 'delivered', '2');
  s.advance('cc', 'delivered', '3');
  s.advance('cc', 'delivered', '2');
  s.advance('cc', 'read', '3');
  const m = s.outgoing('cc');
  assert.deepEqual(m.deliveredTo, ['2', '3']);
  assert.deepEqual(m.readBy, ['3']);
  assert.equal(m.state, 'read');
});

test('pins are per server URL', () => {
  pins.set('ws://a/chatd', 'k1');
  assert.equal(pins.get('ws://a/chatd'), 'k1');
  assert.equal(pins.get('ws://b/chatd'), null);
  pins.forget('ws://a/chatd');
  assert.equal(pins.get('ws://a/chatd'), null);
});
