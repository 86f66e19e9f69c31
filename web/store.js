// What the page keeps in localStorage: the pinned server key, the session
// token, and each user's chats and end-to-end state (private keys and
// ratchet sessions: anyone who can run script on this origin can read
// them, as anyone who can read chat's SQLite file can). Like `chatd chat`'s SQLite file, the
// history lives only here: the server deletes a message once this page
// has stored it and acknowledged it.

const ls = () => globalThis.localStorage;

function load(key, fallback) {
  try {
    const v = ls().getItem(key);
    return v ? JSON.parse(v) : fallback;
  } catch {
    return fallback;
  }
}

function save(key, v) {
  ls().setItem(key, JSON.stringify(v));
}

// Pins remember one Noise key per server URL (trust on first use).
export const pins = {
  get: (url) => ls().getItem(`chatd.key.${url}`),
  set: (url, key) => ls().setItem(`chatd.key.${url}`, key),
  forget: (url) => ls().removeItem(`chatd.key.${url}`),
};

// The session token of the last WELCOME, for RESUME.
export const sessions = {
  get: (url) => load(`chatd.session.${url}`, null),
  set: (url, s) => save(`chatd.session.${url}`, s),
  forget: (url) => ls().removeItem(`chatd.session.${url}`),
};

// Outgoing message states, in the order they advance (never backwards).
export const STATES = ['pending', 'sent', 'delivered', 'read'];
const MAX_PER_CHAT = 500;

// Store holds one user's contacts, groups and messages. Chats are keyed
// "u:ID" (one to one) or "g:ID" (group); ids are decimal strings.
export class Store {
  constructor(url, user) {
    this.user = user;
    this.key = `chatd.store.${url}.${user}`;
    const d = load(this.key, {});
    this.names = d.names ?? {}; // user id -> name
    this.groups = d.groups ?? {}; // group id -> name
    this.chats = d.chats ?? {}; // chat key -> [message]
    this.lastSeq = d.lastSeq ?? '0'; // highest inbox seq stored
    this.ackedSeq = d.ackedSeq ?? '0'; // highest seq acknowledged: READ may name it
    // The end-to-end device's state (e2e/device.js: keys, pins, sessions).
    // It lives in the same item as the messages, so one setItem writes a
    // session's new state together with the message it sealed or opened.
    this.e2e = d.e2e ?? null;
    // Sealed sender-key distributions (1:1 SENDs the user never sees) with
    // no SENT yet: resent with DUP after a reconnect, like messages.
    this.controls = d.controls ?? [];
  }

  // controlSent drops a distribution the server has stored.
  controlSent(id) {
    const i = this.controls.findIndex((c) => c.id === id);
    if (i < 0) return false;
    this.controls.splice(i, 1);
    return true;
  }

  flush() {
    save(this.key, { names: this.names, groups: this.groups, chats: this.chats, lastSeq: this.lastSeq,
      ackedSeq: this.ackedSeq, e2e: this.e2e, controls: this.controls });
  }

  chat(key) {
    return (this.chats[key] ??= []);
  }

  // add stores a message unless the chat already has it (an entry pushed
  // again after a lost ACK is the same (from, id)). It reports whether it
  // was new.
  add(key, m) {
    const list = this.chat(key);
    if (list.some((x) => x.id === m.id && x.from === m.from)) return false;
    list.push(m);
    list.sort((a, b) => a.time - b.time);
    if (list.length > MAX_PER_CHAT) list.splice(0, list.length - MAX_PER_CHAT);
    return true;
  }

  // outgoing finds one of our messages by id.
  outgoing(id) {
    for (const list of Object.values(this.chats)) {
      const m = list.find((x) => x.out && x.id === id);
      if (m) return m;
    }
    return null;
  }

  // advance moves an outgoing message's state forward only.
  advance(id, state, by) {
    const m = this.outgoing(id);
    if (!m) return null;
    const who = { delivered: 'deliveredTo', read: 'readBy' }[state];
    if (by && who) {
      m[who] = [...new Set([...(m[who] ?? []), by])]; // which members, in a group
    }
    if (STATES.includes(state) && STATES.indexOf(state) > STATES.indexOf(m.state)) m.state = state;
    if (state === 'failed' || state === 'expired') m.state = state;
    return m;
  }

  pending() {
    return Object.values(this.chats).flat().filter((m) => m.out && m.state === 'pending')
      .sort((a, b) => a.time - b.time);
  }
}
