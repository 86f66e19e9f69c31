// The envelope a chatd body carries, the padded Content inside it, and a
// session per peer (PQXDH + ratchet + envelope), as internal/e2e/envelope
// and internal/e2e/session do them (PROTOCOL.md 14.5, 14.6, 14.8, 14.9).
import { concat, u32, Reader, MalformedError } from './bytes.js';
import { State, OVERHEAD } from './ratchet.js';
import { initiate, marshalInitial, readInitial, respond } from './pqxdh.js';

export const KIND = { PREKEY: 1, RATCHET: 2, SENDER_KEY: 3 };
export const CONTENT = { BODY: 1, SENDER_KEY: 2 };
const PAD = 64;
const SENDER_KEY_OVERHEAD = 1 + 16 + 4 + 4 + 16 + 64;

export function marshalEnvelope(e) {
  if (e.kind === KIND.PREKEY) return concat(Uint8Array.of(1, 1), marshalInitial(e.initial), e.message);
  if (e.kind === KIND.RATCHET || e.kind === KIND.SENDER_KEY) return concat(Uint8Array.of(1, e.kind), e.message);
  throw new MalformedError(`envelope: kind ${e.kind}`);
}

export function unmarshalEnvelope(data) {
  const r = new Reader(data, 'envelope');
  if (r.u8() !== 1) throw new MalformedError('envelope: malformed: version');
  const e = { kind: r.u8(), initial: null };
  let min;
  if (e.kind === KIND.PREKEY) {
    e.initial = readInitial(r);
    min = OVERHEAD;
  } else if (e.kind === KIND.RATCHET) {
    min = OVERHEAD;
  } else if (e.kind === KIND.SENDER_KEY) {
    min = SENDER_KEY_OVERHEAD;
  } else {
    throw new MalformedError(`envelope: malformed: kind ${e.kind}`);
  }
  e.message = r.rest();
  if (e.message.length < min) throw new MalformedError(`envelope: malformed: message of ${e.message.length} bytes`);
  return e;
}

const padded = (n) => Math.ceil((5 + n) / PAD) * PAD;

export function marshalContent(type, body) {
  const out = new Uint8Array(padded(body.length));
  out.set(concat(Uint8Array.of(type), u32(body.length), body));
  return out;
}

export function unmarshalContent(data) {
  const r = new Reader(data, 'envelope: content');
  const type = r.u8();
  if (type !== CONTENT.BODY && type !== CONTENT.SENDER_KEY) throw new MalformedError(`envelope: content type ${type}`);
  const body = r.bytes(r.u32());
  const pad = r.rest();
  if (pad.length !== padded(body.length) - 5 - body.length) throw new MalformedError('envelope: content padding length');
  if (pad.some((b) => b !== 0)) throw new MalformedError('envelope: non-zero padding');
  return { type, body };
}

// Session: a ratchet state plus, for the initiator, the initial message it
// repeats in every envelope until a reply opens.
export class Session {
  constructor(state, initial) {
    this.state = state;
    this.initial = initial;
  }

  // start is session.Start: it throws on a bundle whose signatures fail.
  static start(identityPriv, bundle) {
    const { initial, secret } = initiate(identityPriv, bundle);
    return new Session(State.alice(secret.sharedKey, secret.ad, bundle.signed.key), initial);
  }

  // accept is session.Accept: keys.signed(id) / oneTime(id) / kem(id) give
  // the private prekeys ({id, priv} or {id, seed}); nothing is created
  // unless the message decrypts. It returns {session, content, initial}.
  static accept(identityPriv, keys, body) {
    const e = unmarshalEnvelope(body);
    if (e.kind !== KIND.PREKEY) throw new Error('session: wrong envelope kind, want prekey');
    const m = e.initial;
    const spk = keys.signed(m.signedId);
    const kem = keys.kem(m.kemId);
    const opk = m.oneTimeId === null ? null : keys.oneTime(m.oneTimeId);
    if (!spk) throw new Error(`session: signed prekey ${m.signedId} unknown`);
    if (!kem) throw new Error(`session: KEM prekey ${m.kemId} unknown`);
    if (m.oneTimeId !== null && !opk) throw new Error(`session: one-time prekey ${m.oneTimeId} used or unknown`);
    const secret = respond(identityPriv, spk, opk, kem, m);
    const s = new Session(State.bob(secret.sharedKey, secret.ad, spk.priv), null);
    const content = s.openMessage(e.message);
    return { session: s, content, initial: m };
  }

  seal(type, body) {
    const message = this.state.encrypt(marshalContent(type, body));
    return this.initial
      ? marshalEnvelope({ kind: KIND.PREKEY, initial: this.initial, message })
      : marshalEnvelope({ kind: KIND.RATCHET, message });
  }

  // open decrypts an envelope; on failure the session is unchanged.
  open(body) {
    const e = unmarshalEnvelope(body);
    if (e.kind !== KIND.PREKEY && e.kind !== KIND.RATCHET) throw new Error('session: wrong envelope kind');
    return this.openMessage(e.message);
  }

  openMessage(msg) {
    const { plaintext, state } = this.state.decrypt(msg);
    const content = unmarshalContent(plaintext); // before committing: a bad Content changes nothing either
    this.state = state;
    if (state.hasReceived) this.initial = null;
    return content;
  }

  marshal() {
    return this.initial
      ? concat(Uint8Array.of(1, 1), marshalInitial(this.initial), this.state.marshal())
      : concat(Uint8Array.of(1, 0), this.state.marshal());
  }

  static unmarshal(data) {
    const r = new Reader(data, 'session');
    if (r.u8() !== 1) throw new MalformedError('session: version');
    const f = r.u8();
    let initial = null;
    if (f === 1) initial = readInitial(r);
    else if (f !== 0) throw new MalformedError('session: bad flags');
    return new Session(State.unmarshal(r.rest()), initial);
  }
}
