// The page: login, chats, ticks, presence and typing, on one Link at a
// time. It follows `chatd chat` and the Go client: messages are stored
// before they are sent (and resent with DUP until SENT), inbox entries are
// stored before they are acknowledged, and a lost connection comes back
// with RESUME after a backoff with jitter.
import { encode, FLAG_DUP, FLAG_GROUP, OPTION_SENT_DELIVERED, RECEIPT } from './codec.js';
import { Link, KeyRefusedError, RefusedError } from './transport.js';
import { pins, sessions, Store } from './store.js';
import { Device, NoSessionError, UnacceptedError, safetyNumber } from './e2e/device.js';

const $ = (sel) => document.querySelector(sel);
const params = new URLSearchParams(location.search);
const wsURL = params.get('ws') ??
  `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/chatd`;
const urlKey = params.get('key')?.toLowerCase() ?? null;

const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const unhex = (s) => Uint8Array.from(s.match(/../g) ?? [], (b) => parseInt(b, 16));
const te = new TextEncoder();
const td = new TextDecoder();

// Codes that leave a SEND's fate open: resend with DUP (PROTOCOL.md §3).
const RETRY_SEND = new Set([27, 28, 60, 62, 63]);
const ACK_DELAY = 10;
const TYPING_IDLE = 3000;

const app = {
  link: null,
  store: null,
  self: null, // our user id, a decimal string
  welcome: null,
  current: null, // chat key
  req: 1,
  waiting: new Map(), // req -> {resolve, reject}
  ackSeq: 0n, // highest seq stored and not yet acknowledged
  ackTimer: null,
  loggedIn: false, // WELCOME came on the current link
  options: 0, // req of this link's OPTIONS until it is answered (0: none waits)
  noOptions: false, // a server older than OPTIONS closed on it: this page asks no more
  pingTimer: null,
  attempt: 0,
  stopped: false, // no reconnect (logged out, kicked, key refused)
  presence: {}, // user id -> text
  typing: {}, // chat key -> {who, until}
  typingSent: 0,
  typingTimer: null,
  dev: null, // the end-to-end device (e2e/device.js), its state in app.store.e2e
  e2eReady: false, // keys published on this connection
  sealing: Promise.resolve(), // seals and sends one message at a time, in order
};

// ---- connection ----------------------------------------------------

function status(text, cls = '') {
  const el = $('#status');
  el.textContent = text;
  el.className = cls;
}

// checkKey pins the server's Noise key: a key in the URL wins, else the
// one seen first here. A different key is refused before login.
function checkKey(got) {
  const want = urlKey ?? pins.get(wsURL);
  if (want && want !== got) throw new KeyRefusedError(got, want);
  if (!want) pins.set(wsURL, got);
  $('#serverkey').textContent = `server key ${got} (${urlKey ? 'given in the URL' : want ? 'pinned' : 'trusted on first use'})`;
}

async function connect(auth) {
  status(app.attempt ? 'reconnecting…' : 'connecting…');
  app.loggedIn = false;
  const link = new Link(wsURL, { checkKey, onFrames, onClose: (err) => lost(link, err) });
  app.link = link;
  try {
    await link.connect();
  } catch (err) {
    return; // lost() has said why and planned what next
  }
  link.send(encode(auth.type, auth.fields));
}

function lost(link, err) {
  if (link !== app.link) return;
  clearInterval(app.pingTimer);
  clearTimeout(app.ackTimer);
  app.ackTimer = null;
  app.ackSeq = 0n;
  for (const w of app.waiting.values()) w.reject(new Error('connection lost'));
  app.waiting.clear();
  if (err instanceof KeyRefusedError) {
    app.stopped = true;
    const a = $('#keyalert');
    a.textContent = err.message;
    a.hidden = false;
    status('refused: the server key changed', 'bad');
    return;
  }
  if (app.stopped) return;
  if (!sessions.get(wsURL)) {
    // Never logged in: back to the form, saying why.
    status(`not connected: ${err?.message ?? 'closed'}`, 'bad');
    showLogin(true);
    return;
  }
  app.attempt++;
  let wait = Math.min(30000, 1000 * 2 ** Math.min(app.attempt - 1, 5));
  if (err instanceof RefusedError && err.frame.type === 'GOAWAY') wait = err.frame.retryAfter;
  wait *= 1 + Math.random(); // jitter: no herd after a restart
  status(`connection lost (${err?.message ?? 'closed'}); reconnecting in ${(wait / 1000).toFixed(1)} s`, 'bad');
  setTimeout(() => resume(), wait);
}

function resume() {
  const s = sessions.get(wsURL);
  if (!s || app.stopped) return showLogin(true);
  connect({ type: 'RESUME', fields: { token: unhex(s.token) } });
}

function request(type, fields) {
  const req = app.req++;
  return new Promise((resolve, reject) => {
    app.waiting.set(req, { resolve, reject });
    app.link.send(encode(type, { req, ...fields }));
  });
}

function send(...frames) {
  if (app.link?.cipher && !app.link.closed) app.link.send(...frames);
}

// ---- frames from the server -----------------------------------------

function onFrames(frames) {
  let changed = false;
  for (const f of frames) {
    changed = handle(f) || changed;
  }
  if (changed) {
    app.store?.flush();
    render();
  }
  scheduleAck();
}

function handle(f) {
  switch (f.type) {
    case 'WELCOME':
      welcomed(f);
      return true;
    case 'DELIVER':
      return entry(f.seq, () => deliver(f));
    case 'RECEIPT':
      return entry(f.seq, () => receipt(f));
    case 'GROUP_EVENT':
      return entry(f.seq, () => groupEvent(f));
    case 'SENT':
      return sent(f);
    case 'SENT_DELIVERED':
      return sentDelivered(f);
    case 'PRESENCE':
      app.presence[f.user] = f.state === 1 ? 'online'
        : f.state === 2 ? 'hidden'
          : `last seen ${f.lastSeen ? new Date(Number(f.lastSeen)).toLocaleString() : 'never'}`;
      return true;
    case 'IS_TYPING': {
      const key = f.group ? `g:${f.group}` : `u:${f.from}`;
      if (f.state) app.typing[key] = { who: f.from.toString(), until: Date.now() + 6000 };
      else delete app.typing[key];
      setTimeout(render, 6100);
      return true;
    }
    case 'KEYS_COUNTS':
    case 'KEYS_BUNDLE':
    case 'USER':
    case 'OK':
    case 'GROUP_INFO':
    case 'GROUPS': {
      const w = app.waiting.get(f.req);
      app.waiting.delete(f.req);
      w?.resolve(f);
      return false;
    }
    case 'ERROR':
      return error(f);
    case 'KICKED':
      kicked(f.reason);
      return false;
    case 'GOAWAY':
      status(`server going away; reconnecting in ${(f.retryAfter / 1000).toFixed(1)} s`, 'bad');
      return false;
    case 'PING':
      send(encode('PONG', { nonce: f.nonce }));
      return false;
    case 'KEYS_LOW':
      if (app.dev) publish({ longLived: false, oneTime: true }).catch((err) => flash(`refill one-time prekeys: ${err.message}`));
      return false;
    case 'IDENTITY_CHANGED':
      app.dev?.identityChanged(f.user.toString());
      flash(`${nameOf(f.user.toString())} has a new identity key: the next message fetches it, and shows the change`);
      return true;
  }
  return false;
}

function welcomed(f) {
  app.welcome = f;
  app.loggedIn = true;
  askOptions(); // first: OPTIONS covers only the SENDs behind it, the resends among them
  app.self = f.user.toString();
  app.attempt = 0;
  const name = $('#name').value || sessions.get(wsURL)?.name;
  sessions.set(wsURL, { name, user: app.self, token: hex(f.token) });
  if (app.store?.user !== app.self) {
    // Another account on this browser: its own chats, nothing of the last one's.
    app.store = new Store(wsURL, app.self);
    app.current = null;
    app.presence = {};
    app.typing = {};
    app.dev = null;
  }
  app.store.names[app.self] = name;
  status('connected', 'good');
  $('#me').textContent = name;
  showLogin(false);
  clearInterval(app.pingTimer);
  const every = Math.max(5, f.keepalive / 3) * 1000;
  app.pingTimer = setInterval(() => send(encode('PING', { nonce: BigInt(Date.now()) })), every);
  startE2E();
  const users = Object.keys(app.store.chats).filter((k) => k.startsWith('u:')).map((k) => BigInt(k.slice(2)));
  if (users.length) send(encode('SUBSCRIBE', { users: users.slice(0, 255) }));
  request('GROUP_LIST', {}).then((g) => {
    for (const x of g.groups) app.store.groups[x.group] = x.name;
    app.store.flush();
    render();
  }, () => {});
  if (app.current === null) app.current = Object.keys(app.store.chats)[0] ?? null;
}

// askOptions asks for SENT_DELIVERED (PROTOCOL.md §3), as the Go client
// does: one frame, and no RECEIPT entry to store and acknowledge, for a
// message its recipient acknowledges live. The option lasts for the
// connection, so it is asked after every WELCOME. Nothing waits for the
// answer (the server handles frames in order, so the SENDs behind it are
// covered): the OK, or the ERROR 33 of a server that does not serve the
// bit, only settles app.options; either way SENT and RECEIPT keep coming
// for the other messages, and the page takes both forms.
function askOptions() {
  if (app.noOptions) return;
  const req = app.req++;
  const settled = () => {
    if (app.options === req) app.options = 0;
  };
  app.options = req;
  app.waiting.set(req, { resolve: settled, reject: settled });
  send(encode('OPTIONS', { req, flags: OPTION_SENT_DELIVERED }));
}

// entry stores an inbox entry once (seqs only grow), then schedules the ACK.
function entry(seq, apply) {
  let changed = false;
  if (seq > BigInt(app.store.lastSeq)) {
    changed = apply();
    app.store.lastSeq = seq.toString();
  }
  if (seq > app.ackSeq) app.ackSeq = seq;
  return changed;
}

function deliver(f) {
  const from = f.from.toString();
  const key = f.group ? `g:${f.group}` : `u:${from}`;
  const m = { id: hex(f.id), from, time: Number(f.time), body: '', out: false,
    seq: f.seq.toString(), read: false };
  if (app.store.chat(key).some((x) => x.id === m.id && x.from === from)) return false;
  // Decrypt (PROTOCOL.md section 14). A body that does not open changes
  // no state and is stored as a note, and acknowledged: it would not open
  // later either (as chat does).
  try {
    if (f.group) {
      m.body = td.decode(app.dev.openGroup(f.group.toString(), from, f.body));
    } else {
      const o = app.dev.open(from, f.body);
      if (o.control) return true; // a sender-key distribution: filed, not shown
      m.body = td.decode(o.body);
      if (o.newIdentity) warnChanged(from);
    }
  } catch (err) {
    m.body = `[could not decrypt: ${err.message}]`;
    m.undecrypted = true;
  }
  if (!app.store.add(key, m)) return false;
  learnName(from);
  if (!f.group && !(from in app.presence)) send(encode('SUBSCRIBE', { users: [f.from] }));
  if (f.group && !(f.group in app.store.groups)) refreshGroup(f.group);
  if (app.current === null) app.current = key;
  return true;
}

// sent takes the server's answer to one of our SENDs: a sender-key
// distribution is done with; a message gets its ✓ and the server's time.
function sent(f) {
  if (app.store.controlSent(hex(f.id))) return true;
  const m = app.store.advance(hex(f.id), 'sent');
  if (m) m.time = Number(f.time);
  return !!m;
}

// sentDelivered is a SENT and the delivered RECEIPT the server did not
// make, for a message its recipient acknowledged live (PROTOCOL.md §3):
// the receipt's by is the message's recipient, its group 0, its time the
// recipient's ACK. It is no inbox entry: no seq, nothing to acknowledge.
// Only 1:1 messages are acknowledged live, so m.to is a user.
function sentDelivered(f) {
  const m = app.store.outgoing(hex(f.id));
  const changed = sent(f);
  if (!m) return changed; // a sender-key distribution, or a message no longer kept
  return receipt({ kind: RECEIPT.DELIVERED, by: BigInt(m.to), group: 0n, time: f.delivered, ids: [f.id] }) || changed;
}

function receipt(f) {
  const state = { [RECEIPT.DELIVERED]: 'delivered', [RECEIPT.READ]: 'read', [RECEIPT.EXPIRED]: 'expired' }[f.kind];
  let changed = false;
  for (const id of f.ids) {
    changed = !!app.store.advance(hex(id), state, f.group ? f.by.toString() : null) || changed;
  }
  learnName(f.by.toString());
  return changed;
}

const EVENT = { 1: 'created the group', 2: 'added', 3: 'removed', 4: 'left', 5: 'renamed the group to', 6: 'made admin', 7: 'revoked admin of' };

function groupEvent(f) {
  const key = `g:${f.group}`;
  app.store.groups[f.group] = f.name;
  const users = f.users.map((u) => u.toString());
  [f.actor.toString(), ...users].forEach(learnName);
  const text = f.kind === 5 ? `${EVENT[5]} "${f.name}"` : f.kind === 1 || f.kind === 4 ? EVENT[f.kind]
    : `${EVENT[f.kind]} ${users.map((u) => `@${u}`).join(', ')}`;
  app.store.add(key, { id: `ev${f.seq}`, from: f.actor.toString(), time: Number(f.time), event: true, body: text });
  if (app.current === null) app.current = key;
  // Someone gone: a new sender-key chain before our next message to the
  // group (or, if it is us, forget the group's keys), stored with the
  // event, before it is acknowledged.
  const gone = f.kind === 3 ? users : f.kind === 4 ? [f.actor.toString()] : [];
  if (gone.length && app.dev) {
    if (gone.includes(app.self)) app.dev.leftGroup(f.group.toString());
    else app.dev.membersRemoved(f.group.toString(), gone);
  }
  return true;
}

function error(f) {
  const id = hex(f.id);
  if (!/^0+$/.test(id)) {
    const m = app.store?.outgoing(id);
    if (m && RETRY_SEND.has(f.code)) {
      setTimeout(() => m.state === 'pending' && sendMessage(m, true), 2000 + Math.random() * 2000);
      return false;
    }
    if (m) {
      app.store.advance(id, 'failed');
      m.error = f.detail || `error ${f.code}`;
      return true;
    }
  }
  if (f.req) {
    const w = app.waiting.get(f.req);
    app.waiting.delete(f.req);
    if (w) {
      w.reject(Object.assign(new Error(f.detail || `error ${f.code}`), { code: f.code }));
      return false;
    }
  }
  if (f.code === 3 && app.options) {
    // A server older than OPTIONS does not know the type, and closes: the
    // reconnect goes without it, as does every later one of this page
    // (PROTOCOL.md §3). The status line says the rest; no flash.
    app.noOptions = true;
    return false;
  }
  if (!app.loggedIn) {
    if (f.code === 25 || f.code === 20 || f.code === 21 || f.code === 22 || f.code === 23 || f.code === 24 || f.code === 26) {
      // A refused login: back to the form (a revoked token needs the password).
      if (f.code === 25) sessions.forget(wsURL);
      const link = app.link;
      app.link = null; // so that its close plans no reconnect
      link.close();
      status(loginError(f), 'bad');
      showLogin(true);
      return false;
    }
  }
  flash(`error ${f.code}: ${f.detail}`);
  return false;
}

function loginError(f) {
  return {
    20: 'no such user: tick "register" to create the account',
    21: 'wrong password',
    22: 'that name is taken',
    23: 'not a valid name: 3 to 32 of a-z 0-9 . _ -, starting with a letter or digit',
    24: 'passwords are 8 to 128 bytes',
    25: 'session expired: log in again',
    26: 'too many login attempts: wait a minute',
  }[f.code] ?? `refused: ${f.detail}`;
}

function kicked(reason) {
  const why = { 1: 'logged in elsewhere', 2: 'logged out', 3: 'password changed elsewhere', 5: 'idle' }[reason] ?? `reason ${reason}`;
  if (reason === 5) return; // the close that follows reconnects
  app.stopped = true;
  if (reason !== 1) sessions.forget(wsURL);
  status(`session ended: ${why}`, 'bad');
  if (reason !== 1) showLogin(true);
}

// Acknowledge cumulatively, once per batch, a few ms after the entries
// were stored (PROTOCOL.md §3: ACK frames count against the rate limit).
function scheduleAck() {
  if (app.ackSeq === 0n || app.ackTimer) return;
  app.ackTimer = setTimeout(() => {
    app.ackTimer = null;
    if (app.ackSeq === 0n) return;
    app.store.flush(); // stored before acknowledged (onFrames flushed; this is cheap insurance)
    send(encode('ACK', { seq: app.ackSeq }));
    app.store.ackedSeq = app.ackSeq.toString();
    app.store.flush();
    app.ackSeq = 0n;
    markRead();
  }, ACK_DELAY);
}

// ---- names, groups ------------------------------------------------

const looking = new Set();
function learnName(id) {
  if (!app.store || id in app.store.names || looking.has(id) || !app.link?.cipher) return;
  looking.add(id);
  request('LOOKUP', { user: BigInt(id), name: '' }).then((u) => {
    app.store.names[id] = u.name;
    app.store.flush();
    render();
  }, () => {}).finally(() => looking.delete(id));
}

async function lookupName(name) {
  for (const [id, n] of Object.entries(app.store.names)) if (n === name) return id;
  const u = await request('LOOKUP', { user: 0n, name });
  app.store.names[u.user] = u.name;
  return u.user.toString();
}

function refreshGroup(id) {
  request('GROUP_GET', { group: BigInt(id) }).then((g) => {
    app.store.groups[id] = g.name;
    g.members.forEach((m) => learnName(m.user.toString()));
    app.store.flush();
    render();
  }, () => {});
}

const nameOf = (id) => app.store?.names[id] ?? `user${id}`;
const chatTitle = (key) => key.startsWith('g:') ? `# ${app.store.groups[key.slice(2)] ?? `group ${key.slice(2)}`}` : nameOf(key.slice(2));

// ---- sending --------------------------------------------------------

function newID() {
  // UUIDv7-like: 48 bits of milliseconds, then random bits.
  const id = crypto.getRandomValues(new Uint8Array(16));
  const ms = BigInt(Date.now());
  for (let i = 0; i < 6; i++) id[i] = Number((ms >> BigInt(8 * (5 - i))) & 0xffn);
  id[6] = 0x70 | (id[6] & 0x0f);
  return id;
}

// sendMessage sends m's sealed body; a message is sealed once, and a
// resend (DUP) carries the same envelope, as chat does.
function sendMessage(m, dup) {
  if (!m.sealed) return;
  send(encode('SEND', {
    id: unhex(m.id),
    flags: (dup ? FLAG_DUP : 0) | (m.group ? FLAG_GROUP : 0),
    to: BigInt(m.to),
    body: unhex(m.sealed),
  }));
}

function sendText(text) {
  if (!app.current || !text) return;
  const group = app.current.startsWith('g:');
  const m = { id: hex(newID()), from: app.self, to: app.current.slice(2), group, time: Date.now(),
    body: text, out: true, state: 'pending' };
  app.store.add(app.current, m);
  app.store.flush(); // stored before sealed and sent: a reload seals and sends it
  seal(m);
  stopTyping();
  render();
}

// ---- end-to-end encryption (PROTOCOL.md sections 11 and 14) -----------

// startE2E makes this browser's device keys once and publishes them (or
// checks the published ones with KEYS_CHECK), then sends what waits.
async function startE2E() {
  const link = app.link;
  app.e2eReady = false;
  if (!app.dev) {
    app.dev = new Device(app.store.e2e ?? undefined);
    app.store.e2e = app.dev.data();
    app.store.flush(); // the private keys are stored before any public one leaves
  }
  try {
    if (!app.dev.data().published) {
      await publish({ longLived: true, oneTime: true });
    } else {
      try {
        await request('KEYS_CHECK', { digest: app.dev.digest() });
      } catch (err) {
        if (err.code !== 81) throw err;
        await publish({ longLived: true, oneTime: false }); // the server lost or never got them
      }
    }
  } catch (err) {
    if (link === app.link) $('#e2e').textContent = `end-to-end encryption: keys not published (${err.message})`;
    return;
  }
  if (link !== app.link) return;
  app.e2eReady = true;
  $('#e2e').textContent = 'end-to-end encryption: on';
  // Resend, in order, with DUP what was sealed and has no SENT yet
  // (PROTOCOL.md §3): sender-key distributions first, then messages; and
  // seal what waits.
  for (const c of app.store.controls) sendControl(c, true);
  for (const m of app.store.pending()) {
    if (m.sealed) sendMessage(m, true);
    else seal(m);
  }
}

async function publish(what) {
  const ups = app.dev.uploads(what);
  app.store.flush(); // new one-time private keys stored before their public halves are uploaded
  let counts;
  for (const up of ups) counts = await request('KEYS_UPLOAD', up);
  if (!what.longLived) {
    $('#e2e').textContent = `end-to-end encryption: on; one-time prekeys refilled (${counts.ec} EC, ${counts.kem} KEM on the server)`;
  }
  if (!app.dev.data().published) {
    app.dev.data().published = true;
    app.store.flush();
  }
}

// seal queues m: sessions are started and messages sealed one at a time,
// so the ratchet sees them in the order they were typed.
function seal(m) {
  app.sealing = app.sealing.then(() => sealNow(m), () => sealNow(m));
}

async function sealNow(m) {
  if (m.sealed || !app.e2eReady) return;
  let controls = [];
  try {
    if (m.group) {
      controls = await sealGroup(m);
    } else {
      await ensureSession(m.to);
      m.sealed = hex(app.dev.seal(m.to, te.encode(m.body)));
    }
    delete m.waiting;
  } catch (err) {
    m.waiting = err.message;
    app.store.flush();
    render();
    return;
  }
  app.store.flush(); // the sessions' new state and the sealed bodies in one write, before sending
  for (const c of controls) sendControl(c, false);
  sendMessage(m, false);
  render();
}

// sealGroup gives every member who lacks our current sender-key chain a
// distribution over their 1:1 session (a control message: its own id,
// not shown), then seals the message once for the whole group, as chat
// does (PROTOCOL.md 14.3 step 3, 14.12).
async function sealGroup(m) {
  const info = await request('GROUP_GET', { group: BigInt(m.to) });
  const members = info.members.map((x) => x.user.toString()).filter((u) => u !== app.self);
  const ready = [];
  for (const u of app.dev.needKey(m.to, members)) {
    try {
      await ensureSession(u);
      ready.push(u);
    } catch (err) {
      flash(`${nameOf(u)} cannot read this group yet: ${err.message}`);
    }
  }
  const controls = ready.map((u) => ({ id: hex(newID()), to: u, sealed: hex(app.dev.sealDistribution(m.to, u)) }));
  app.store.controls.push(...controls);
  m.sealed = hex(app.dev.sealGroup(m.to, te.encode(m.body)));
  return controls;
}

function sendControl(c, dup) {
  send(encode('SEND', { id: unhex(c.id), flags: dup ? FLAG_DUP : 0, to: BigInt(c.to), body: unhex(c.sealed) }));
}

async function ensureSession(user) {
  try {
    return app.dev.ready(user);
  } catch (err) {
    if (!(err instanceof NoSessionError)) throw err;
  }
  let b;
  try {
    b = await request('KEYS_FETCH', { user: BigInt(user), device: 1 });
  } catch (err) {
    if (err.code === 82) throw new Error(`${nameOf(user)} has no end-to-end keys yet`);
    throw new Error(`fetch ${nameOf(user)}'s keys: ${err.message}`);
  }
  try {
    app.dev.ready(user);
    return; // a session arrived from them meanwhile
  } catch (err) {
    if (!(err instanceof NoSessionError)) throw err;
  }
  const changed = app.dev.startSession(user, b.bundles[0]);
  app.store.flush();
  if (changed) {
    warnChanged(user);
    throw new UnacceptedError(`${nameOf(user)}'s safety number changed: accept the new key to send`);
  }
}

function warnChanged(user) {
  flash(`${nameOf(user)}'s SAFETY NUMBER CHANGED: their identity key is not the one this page had. ` +
    'They may have reinstalled, or someone may be in the middle. Messages to them wait until you accept the new key.');
}

function acceptKey() {
  const user = app.current?.slice(2);
  if (!user || !app.dev?.accept(user)) return;
  app.store.flush();
  for (const m of app.store.pending()) if (m.to === user && !m.sealed) seal(m);
  render();
}

function showSafety() {
  const user = app.current?.slice(2);
  const p = user && app.dev?.peer(user);
  if (!p) return flash('no key for this contact yet: exchange a message first');
  flash(`safety number with ${nameOf(user)}: ${safetyNumber(BigInt(app.self), app.dev.identityKey, BigInt(user), unhex(p.key))}`);
}

function typed() {
  if (!app.current) return;
  const now = Date.now();
  if (now - app.typingSent > TYPING_IDLE) {
    app.typingSent = now;
    send(encode('TYPING', { to: BigInt(app.current.slice(2)), flags: app.current.startsWith('g:') ? FLAG_GROUP : 0, state: 1 }));
  }
  clearTimeout(app.typingTimer);
  app.typingTimer = setTimeout(stopTyping, TYPING_IDLE);
}

function stopTyping() {
  clearTimeout(app.typingTimer);
  if (app.typingSent && app.current) {
    send(encode('TYPING', { to: BigInt(app.current.slice(2)), flags: app.current.startsWith('g:') ? FLAG_GROUP : 0, state: 0 }));
  }
  app.typingSent = 0;
}

// markRead sends READ for the open chat's acknowledged, unread messages,
// one READ per sender (READ names one sender), while the page is visible.
function markRead() {
  if (!app.current || document.hidden || !app.link?.cipher) return;
  const group = app.current.startsWith('g:') ? BigInt(app.current.slice(2)) : 0n;
  const bySender = new Map();
  for (const m of app.store.chat(app.current)) {
    if (m.out || m.event || m.read || BigInt(m.seq) > BigInt(app.store.ackedSeq)) continue;
    if (!bySender.has(m.from)) bySender.set(m.from, []);
    bySender.get(m.from).push(m);
  }
  for (const [from, msgs] of bySender) {
    for (let i = 0; i < msgs.length; i += 255) {
      const part = msgs.slice(i, i + 255);
      send(encode('READ', { to: BigInt(from), group, ids: part.map((m) => unhex(m.id)) }));
      part.forEach((m) => { m.read = true; });
    }
  }
  if (bySender.size) {
    app.store.flush();
    render();
  }
}

// ---- UI -------------------------------------------------------------

function showLogin(show) {
  $('#login').hidden = !show;
  $('#main').hidden = show;
  $('#logout').hidden = show;
}

function flash(text) {
  const el = $('#flash');
  el.textContent = text;
  clearTimeout(flash.t);
  flash.t = setTimeout(() => { el.textContent = ''; }, 8000);
}

function tick(m) {
  switch (m.state) {
    case 'pending': return m.waiting ? `🕓 waits: ${m.waiting}` : '🕓';
    case 'sent': return '✓';
    case 'delivered': return '✓✓';
    case 'read': return '✓✓ read';
    case 'failed': return `✗ not sent: ${m.error ?? ''}`;
    case 'expired': return '✗ expired';
  }
  return '';
}

function render() {
  if (!app.store) return;
  const chats = $('#chats');
  chats.replaceChildren();
  const keys = Object.keys(app.store.chats);
  for (const id of Object.keys(app.store.groups)) if (!keys.includes(`g:${id}`)) keys.push(`g:${id}`);
  for (const key of keys) {
    const li = document.createElement('li');
    li.dataset.chat = key;
    li.className = key === app.current ? 'current' : '';
    const unread = (app.store.chats[key] ?? []).filter((m) => !m.out && !m.event && !m.read).length;
    const pres = key.startsWith('u:') ? app.presence[key.slice(2)] : null;
    const dot = key.startsWith('u:') ? `<span class="dot ${pres === 'online' ? 'on' : ''}"></span>` : '';
    li.innerHTML = `${dot}<span class="title"></span>` +
      (unread ? `<span class="unread">${unread}</span>` : '');
    li.querySelector('.title').textContent = chatTitle(key);
    li.onclick = () => openChat(key);
    chats.append(li);
  }
  const head = $('#chathead');
  const list = $('#messages');
  list.replaceChildren();
  if (!app.current) {
    head.textContent = 'no chat yet: start one on the left';
    $('#presence').textContent = '';
    $('#typing').textContent = '';
    return;
  }
  head.textContent = chatTitle(app.current);
  const peer = app.current.startsWith('u:') ? app.dev?.peer(app.current.slice(2)) : null;
  $('#lock').textContent = app.current.startsWith('g:') ? '🔒 end-to-end encrypted (sender keys)' : '🔒 end-to-end encrypted';
  $('#acceptkey').hidden = !peer?.changed;
  $('#safety').hidden = !app.current.startsWith('u:');
  $('#presence').textContent = app.current.startsWith('u:') ? (app.presence[app.current.slice(2)] ?? '') : '';
  const group = app.current.startsWith('g:');
  for (const m of app.store.chat(app.current)) {
    const li = document.createElement('li');
    li.dataset.id = m.id;
    li.className = m.event ? 'event' : m.out ? 'out' : 'in';
    const who = m.event ? nameOf(m.from) : m.out ? '' : group ? nameOf(m.from) : '';
    const body = m.event ? m.body.replace(/@(\d+)/g, (_, id) => nameOf(id)) : m.body;
    li.innerHTML = '<span class="who"></span><span class="body"></span><span class="meta"><time></time><span class="ticks"></span></span>';
    li.querySelector('.who').textContent = who;
    li.querySelector('.body').textContent = body;
    li.querySelector('time').textContent = new Date(m.time).toLocaleTimeString();
    if (m.out) {
      const t = li.querySelector('.ticks');
      t.textContent = tick(m);
      t.dataset.state = m.state;
      if (group && (m.deliveredTo || m.readBy)) {
        t.title = `delivered to ${(m.deliveredTo ?? []).map(nameOf).join(', ') || 'nobody yet'}; read by ${(m.readBy ?? []).map(nameOf).join(', ') || 'nobody yet'}`;
      }
    }
    list.append(li);
  }
  list.scrollTop = list.scrollHeight;
  const t = app.typing[app.current];
  $('#typing').textContent = t && t.until > Date.now() ? `${nameOf(t.who)} is typing…` : '';
}

function openChat(key) {
  stopTyping();
  app.current = key;
  if (key.startsWith('g:')) refreshGroup(key.slice(2));
  render();
  markRead();
}

async function startChat(name) {
  try {
    const id = await lookupName(name);
    if (id === app.self) throw new Error('that is you');
    app.store.chat(`u:${id}`);
    app.store.flush();
    send(encode('SUBSCRIBE', { users: [BigInt(id)] }));
    openChat(`u:${id}`);
  } catch (err) {
    flash(`no chat with ${name}: ${err.message}`);
  }
}

async function newGroup(name, members) {
  try {
    const ids = [];
    for (const n of members) ids.push(BigInt(await lookupName(n)));
    const g = await request('GROUP_CREATE', { name, users: ids });
    app.store.groups[g.group] = g.name;
    app.store.chat(`g:${g.group}`);
    app.store.flush();
    openChat(`g:${g.group}`);
  } catch (err) {
    flash(`group not created: ${err.message}`);
  }
}

function bind() {
  $('#login').onsubmit = (ev) => {
    ev.preventDefault();
    app.stopped = false;
    app.welcome = null;
    const fields = { name: $('#name').value.trim(), password: $('#password').value };
    connect({ type: $('#register').checked ? 'REGISTER' : 'LOGIN', fields });
  };
  $('#newchat').onsubmit = (ev) => {
    ev.preventDefault();
    const name = $('#newchat-name').value.trim();
    if (name) startChat(name);
    $('#newchat-name').value = '';
  };
  $('#newgroup').onsubmit = (ev) => {
    ev.preventDefault();
    const members = $('#newgroup-members').value.split(/[\s,]+/).filter(Boolean);
    newGroup($('#newgroup-name').value.trim(), members);
    $('#newgroup').reset();
  };
  $('#composer').onsubmit = (ev) => {
    ev.preventDefault();
    const t = $('#text');
    sendText(t.value.trim());
    t.value = '';
  };
  $('#text').oninput = typed;
  $('#acceptkey').onclick = acceptKey;
  $('#safety').onclick = showSafety;
  $('#logout').onclick = () => {
    send(encode('LOGOUT'));
    sessions.forget(wsURL);
  };
  $('#forgetkey').onclick = () => {
    pins.forget(wsURL);
    location.reload();
  };
  document.addEventListener('visibilitychange', markRead);
  $('#wsurl').textContent = wsURL;
}

bind();
if (sessions.get(wsURL)) {
  $('#name').value = sessions.get(wsURL).name ?? '';
  showLogin(false);
  app.welcome = null;
  const s = sessions.get(wsURL);
  app.store = new Store(wsURL, s.user);
  app.self = s.user;
  render();
  connect({ type: 'RESUME', fields: { token: unhex(s.token) } });
} else {
  showLogin(true);
}
// For the browser test and for curious people: the page's state.
window.chatd = app;
