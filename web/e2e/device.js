// Device is the page's end-to-end state, as internal/e2e/device keeps
// `chatd chat`'s (PROTOCOL.md 14.8, 14.12): the identity key, the signed
// prekey, the last-resort ML-KEM key, one-time prekeys, pinned identity
// keys of peers, and up to four sessions per peer. It does no I/O: the
// page calls it, then writes data() in the same localStorage write as
// the message it sealed or opened, before sending, showing or ACKing.
import { sha256, sha512 } from '../vendor/noble.js';
import { concat, hex, unhex, u32 } from './bytes.js';
import { kemKeyPair, publicKey, signPreKey } from './pqxdh.js';
import { CONTENT, KIND, Session, marshalContent, marshalEnvelope, unmarshalContent, unmarshalEnvelope } from './envelope.js';
import { Receiver, Sender, marshalDistribution, unmarshalDistribution } from './senderkey.js';

const MAX_SESSIONS = 4;
export const BATCH = { ec: 100, kem: 10 }; // what chat uploads per batch
const MAX_UPLOAD = { ec: 300, kem: 32 };

const random = (n) => crypto.getRandomValues(new Uint8Array(n));

export class NoSessionError extends Error {}
export class UnacceptedError extends Error {}
export class NoSenderKeyError extends Error {}

export class Device {
  // d is what data() returned earlier, or undefined for a new device.
  constructor(d) {
    this.d = d ?? null;
    this.created = false;
    if (this.d) this.data();
    if (!this.d) {
      this.d = { identity: hex(random(32)), next: 1, ec: {}, kem: {}, peers: {}, sessions: {}, published: false };
      this.rotate();
      this.data();
      this.created = true;
    }
  }

  data() {
    this.d.senders ??= {}; // group -> our Sender
    this.d.holds ??= {}; // group -> {member: 1}: who has our current chain
    this.d.recv ??= {}; // group -> {member: Receiver}
    return this.d;
  }

  nextID() {
    return this.d.next++;
  }

  rotate() {
    this.d.signed = { id: this.nextID(), priv: hex(random(32)) };
    this.d.last = { id: this.nextID(), seed: hex(random(64)) };
  }

  get identityPriv() {
    return unhex(this.d.identity);
  }

  get identityKey() {
    return publicKey(this.identityPriv);
  }

  longLived() {
    const ik = this.identityPriv;
    const spk = publicKey(unhex(this.d.signed.priv));
    const lr = kemKeyPair(unhex(this.d.last.seed)).publicKey;
    return {
      signed: { id: this.d.signed.id, key: spk, sig: signPreKey(ik, 'ec', spk) },
      lastResort: { id: this.d.last.id, key: lr, sig: signPreKey(ik, 'kem', lr) },
    };
  }

  // digest is KEYS_CHECK's: SHA-256 of identity, signed id and key,
  // last-resort id and key.
  digest() {
    const { signed, lastResort } = this.longLived();
    return sha256(concat(this.identityKey, u32(signed.id), signed.key, u32(lastResort.id), lastResort.key));
  }

  // uploads makes KEYS_UPLOAD frames' fields (without req): the long-lived
  // keys if asked, and a batch of new one-time keys if asked, split so no
  // frame passes the per-frame limits. The new private keys are in data()
  // from now on: persist it before sending the frames.
  uploads({ longLived, oneTime }) {
    const base = () => ({ flags: 0, identity: this.identityKey, signed: null, lastResort: null, ec: [], kem: [] });
    const ups = [base()];
    if (longLived) Object.assign(ups[0], this.longLived());
    if (oneTime) {
      let cur = ups[0];
      for (let i = 0; i < BATCH.ec; i++) {
        if (cur.ec.length === MAX_UPLOAD.ec) ups.push(cur = base());
        const id = this.nextID();
        const priv = random(32);
        this.d.ec[id] = hex(priv);
        cur.ec.push({ id, key: publicKey(priv) });
      }
      cur = ups[0];
      for (let i = 0; i < BATCH.kem; i++) {
        if (cur.kem.length === MAX_UPLOAD.kem) ups.push(cur = base());
        const id = this.nextID();
        const seed = random(64);
        this.d.kem[id] = hex(seed);
        const key = kemKeyPair(seed).publicKey;
        cur.kem.push({ id, key, sig: signPreKey(this.identityPriv, 'kem', key) });
      }
    }
    return ups;
  }

  peer(user) {
    return this.d.peers[user] ?? null;
  }

  // see pins a peer's identity key on first use; a different one later is
  // a change, which blocks sending until accept().
  see(user, key) {
    const k = hex(key);
    const p = this.d.peers[user];
    if (!p) {
      this.d.peers[user] = { key: k, changed: null };
      return false;
    }
    if (p.key === k) {
      p.changed = null;
      return false;
    }
    p.changed = k;
    return true;
  }

  accept(user) {
    const p = this.d.peers[user];
    if (!p?.changed) return false;
    this.d.peers[user] = { key: p.changed, changed: null };
    return true;
  }

  // identityChanged handles IDENTITY_CHANGED: the sessions are void.
  identityChanged(user) {
    if (this.d.peers[user]?.changed) return;
    delete this.d.sessions[user];
  }

  ready(user) {
    if (!this.d.sessions[user]?.length) throw new NoSessionError('no session with this contact yet');
    if (this.d.peers[user]?.changed) throw new UnacceptedError("the contact's identity key changed; not accepted yet");
  }

  // startSession runs PQXDH with a fetched bundle (the codec's form); it
  // throws on a bad signature and reports an identity change.
  startSession(user, b) {
    const s = Session.start(this.identityPriv, b);
    const changed = this.see(user, b.identity);
    const old = changed ? [] : this.d.sessions[user] ?? [];
    this.d.sessions[user] = [hex(s.marshal()), ...old].slice(0, MAX_SESSIONS);
    return changed;
  }

  seal(user, body, type = CONTENT.BODY) {
    this.ready(user);
    const list = this.d.sessions[user];
    const s = Session.unmarshal(unhex(list[0]));
    const out = s.seal(type, body);
    list[0] = hex(s.marshal());
    return out;
  }

  // open decrypts a 1:1 body from user: {body, newIdentity}. On failure it
  // throws and data() is unchanged.
  open(user, body) {
    const e = unmarshalEnvelope(body);
    if (e.kind === KIND.SENDER_KEY) throw new Error('sender-key envelope outside a group');
    const list = this.d.sessions[user] ?? [];
    let last = new NoSessionError('no session with this contact');
    for (let i = 0; i < list.length; i++) {
      const s = Session.unmarshal(unhex(list[i]));
      let c;
      try {
        c = s.open(body);
      } catch (err) {
        last = err;
        continue;
      }
      const out = this.content(user, c, false); // throws before anything is kept, for a bad distribution
      this.d.sessions[user] = [hex(s.marshal()), ...list.slice(0, i), ...list.slice(i + 1)];
      return out;
    }
    if (e.kind !== KIND.PREKEY) throw last;
    const keys = {
      signed: (id) => (id === this.d.signed.id ? { id, priv: unhex(this.d.signed.priv) } : null),
      oneTime: (id) => (this.d.ec[id] ? { id, priv: unhex(this.d.ec[id]) } : null),
      kem: (id) => (id === this.d.last.id ? { id, seed: unhex(this.d.last.seed) }
        : this.d.kem[id] ? { id, seed: unhex(this.d.kem[id]) } : null),
    };
    const { session, content, initial } = Session.accept(this.identityPriv, keys, body);
    const out = this.content(user, content, false);
    if (initial.oneTimeId !== null) delete this.d.ec[initial.oneTimeId];
    delete this.d.kem[initial.kemId]; // never the last-resort key: it is not in d.kem
    const changed = this.see(user, initial.identity);
    const old = changed ? [] : list;
    this.d.sessions[user] = [hex(session.marshal()), ...old].slice(0, MAX_SESSIONS);
    return { ...out, newIdentity: changed };
  }

  // content files a sender-key distribution under (group, sender), which
  // the page then does not show; a body is returned as is.
  content(user, c, changed) {
    if (c.type === CONTENT.BODY) return { body: c.body, control: false, newIdentity: changed };
    const dist = unmarshalDistribution(c.body);
    const group = new DataView(dist.id.buffer, dist.id.byteOffset, 8).getBigUint64(0).toString();
    if (group === '0') throw new Error('sender-key distribution for group 0');
    const recv = (this.d.recv[group] ??= {});
    let r = null;
    if (recv[user]) {
      r = Receiver.unmarshal(unhex(recv[user]));
      try {
        r.process(dist);
      } catch {
        r = null; // another distribution id: they left and were added again
      }
    }
    recv[user] = hex((r ?? Receiver.from(dist)).marshal());
    return { body: null, control: true, group, newIdentity: changed };
  }

  // ---- groups (PROTOCOL.md 14.7, 14.12) ----

  sender(group) {
    if (this.d.senders[group]) return Sender.unmarshal(unhex(this.d.senders[group]));
    const id = random(16);
    new DataView(id.buffer).setBigUint64(0, BigInt(group)); // the group id, then 8 random bytes
    const s = Sender.create(id);
    this.d.senders[group] = hex(s.marshal());
    return s;
  }

  // needKey lists the members that do not hold our current chain.
  needKey(group, members) {
    const h = this.d.holds[group] ?? {};
    return members.filter((m) => !h[m]);
  }

  // sealDistribution seals our chain for member over their 1:1 session.
  sealDistribution(group, member) {
    const out = this.seal(member, marshalDistribution(this.sender(group).distribution()), CONTENT.SENDER_KEY);
    (this.d.holds[group] ??= {})[member] = 1;
    return out;
  }

  sealGroup(group, body) {
    const s = this.sender(group);
    const message = s.encrypt(marshalContent(CONTENT.BODY, body));
    this.d.senders[group] = hex(s.marshal());
    return marshalEnvelope({ kind: KIND.SENDER_KEY, message });
  }

  openGroup(group, member, body) {
    const e = unmarshalEnvelope(body);
    if (e.kind !== KIND.SENDER_KEY) throw new Error(`a group message that is not a sender-key envelope (kind ${e.kind})`);
    const raw = this.d.recv[group]?.[member];
    if (!raw) throw new NoSenderKeyError('no sender key from this member');
    const { plaintext, receiver } = Receiver.unmarshal(unhex(raw)).decrypt(e.message);
    const c = unmarshalContent(plaintext);
    if (c.type !== CONTENT.BODY) throw new Error('a group message must carry a body');
    this.d.recv[group][member] = hex(receiver.marshal());
    return c.body;
  }

  // membersRemoved rotates our chain, so the removed can read nothing
  // new, and forgets theirs; everyone left gets the new chain before our
  // next group message.
  membersRemoved(group, removed) {
    if (this.d.senders[group]) {
      const s = Sender.unmarshal(unhex(this.d.senders[group]));
      s.rotate();
      this.d.senders[group] = hex(s.marshal());
    }
    delete this.d.holds[group];
    for (const u of removed) delete this.d.recv[group]?.[u];
  }

  leftGroup(group) {
    delete this.d.senders[group];
    delete this.d.holds[group];
    delete this.d.recv[group];
  }

  oneTimeCounts() {
    return { ec: Object.keys(this.d.ec).length, kem: Object.keys(this.d.kem).length };
  }
}

// safetyNumber is PROTOCOL.md 14.13, grouped in fives as `chatd chat`'s
// /verify prints it, so two people can compare them.
export function safetyNumber(self, selfKey, peer, peerKey) {
  const half = (key, user) => {
    const id = new Uint8Array(8);
    new DataView(id.buffer).setBigUint64(0, BigInt(user));
    const pub = concat(Uint8Array.of(0x05), key);
    let h = concat(Uint8Array.of(0, 0), pub, id);
    for (let i = 0; i < 5200; i++) h = sha512(concat(h, pub));
    let out = '';
    for (let i = 0; i < 30; i += 5) {
      let n = 0n;
      for (let j = 0; j < 5; j++) n = (n << 8n) | BigInt(h[i + j]);
      out += (n % 100000n).toString().padStart(5, '0');
    }
    return out;
  };
  const a = half(selfKey, self);
  const b = half(peerKey, peer);
  return (a < b ? a + b : b + a).match(/.{5}/g).join(' ');
}
