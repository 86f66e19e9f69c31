// The browser test: two people in headless Chromium talk through a real
// chatd, as web/browser_test.go starts it, with bodies end-to-end
// encrypted by the pages (PROTOCOL.md section 14). Run by that Go test:
//   node test/browser.mjs BASE_URL SERVER_KEY SHOT_DIR
// It prints one line per step and exits non-zero on the first failure.
import { chromium } from 'playwright-core';
import { join } from 'node:path';

const [base, serverKey, shots] = process.argv.slice(2);
if (!base || !/^[0-9a-f]{64}$/.test(serverKey ?? '')) {
  console.error('usage: node test/browser.mjs BASE_URL SERVER_KEY_HEX [SHOT_DIR]');
  process.exit(2);
}
const TIMEOUT = 30000; // generous: a loaded CI machine makes a cold Noise handshake take seconds
// withQuery adds "k=v" to the base URL (which may carry ?ws=... already).
const withQuery = (q) => {
  const u = new URL(base);
  for (const [k, v] of new URLSearchParams(q)) u.searchParams.set(k, v);
  return u.toString();
};
const started = Date.now();
const step = (s) => console.log(`${((Date.now() - started) / 1000).toFixed(1)}s ${s}`);

step('launching chromium');
const browser = await chromium.launch({
  executablePath: process.env.CHATD_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});

// Each person has their own browser context: their own localStorage.
async function person(name, query = '') {
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 600 } });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.log(`[${name} page error] ${e.message}`));
  await page.goto(withQuery(query));
  return { name, ctx, page };
}

async function register(p) {
  await p.page.fill('#name', p.name);
  await p.page.fill('#password', `password-${p.name}`);
  await p.page.check('#register');
  await p.page.click('#login-btn');
  await text(p.page, '#status', /^connected$/);
}

// text waits until selector's text matches re.
async function text(page, selector, re) {
  try {
    await page.waitForFunction(([sel, src, flags]) => {
      const el = document.querySelector(sel);
      return el && new RegExp(src, flags).test(el.textContent);
    }, [selector, re.source, re.flags], { timeout: TIMEOUT });
  } catch (err) {
    const got = await page.textContent(selector).catch(() => '(no element)');
    throw new Error(`${selector} never matched ${re}: it reads ${JSON.stringify(got)}`);
  }
}

// ticks waits until the outgoing message with body has the given state
// (or, with atLeast, a later one: an open chat reads a message at once).
async function ticks(page, body, state, atLeast = false) {
  try {
    await page.waitForFunction(([b, s, least]) => {
      const order = ['pending', 'sent', 'delivered', 'read'];
      return [...document.querySelectorAll('#messages li.out')].some((li) => {
        const got = li.querySelector('.ticks').dataset.state;
        return li.querySelector('.body').textContent === b &&
          (got === s || least && order.indexOf(got) > order.indexOf(s));
      });
    }, [body, state, atLeast], { timeout: TIMEOUT });
  } catch {
    const got = await page.$$eval('#messages li.out', (ls) => ls.map((li) => `${li.querySelector('.body').textContent} [${li.querySelector('.ticks').dataset.state}]`));
    throw new Error(`"${body}" never reached ${state}: ${JSON.stringify(got)}`);
  }
}

// recordFrames keeps, in the page, what the server sends on its current
// connection from now on: the frames are Noise-encrypted on the wire, so
// the test listens where the Link hands them to the page.
async function recordFrames(page) {
  await page.evaluate(() => {
    const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    const link = window.chatd.link;
    const onFrames = link.onFrames;
    window.framesSeen = [];
    link.onFrames = (frames) => {
      for (const f of frames) {
        window.framesSeen.push({ type: f.type, kind: f.kind, ids: (f.ids ?? (f.id ? [f.id] : [])).map(hex),
          time: f.time?.toString(), delivered: f.delivered?.toString() });
      }
      onFrames(frames);
    };
  });
}

// answers returns the frames recorded (recordFrames) that answer or tick
// the outgoing message with body: SENT, SENT_DELIVERED, RECEIPT kind 1.
async function answers(page, body) {
  return page.evaluate((b) => {
    const m = Object.values(window.chatd.store.chats).flat().find((x) => x.out && x.body === b);
    return window.framesSeen.filter((f) => f.ids.includes(m.id) &&
      (f.type === 'SENT' || f.type === 'SENT_DELIVERED' || f.type === 'RECEIPT' && f.kind === 1));
  }, body);
}

async function say(page, body) {
  await page.fill('#text', body);
  await page.click('#send');
}

async function openChat(page, title) {
  await page.click(`#chats li:has(.title:text-is("${title}"))`);
  await text(page, '#chathead', new RegExp(`^${title.replace(/[#]/g, '\\$&')}$`));
}

async function shot(page, name) {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`) });
}

try {
  step('chromium up');
  const alice = await person('alice', `?key=${serverKey}`);
  await register(alice);
  await text(alice.page, '#serverkey', new RegExp(`${serverKey} \\(given in the URL\\)`));
  step('alice registered; the key given in the URL matched');

  let bob = await person('bob');
  await register(bob);
  await text(bob.page, '#serverkey', new RegExp(`${serverKey} \\(trusted on first use\\)`));
  step('bob registered; his page pinned the key on first use');

  // Both open the chat; alice sees bob online and bob sees alice typing.
  await alice.page.fill('#newchat-name', 'bob');
  await alice.page.click('#newchat button');
  await text(alice.page, '#chathead', /^bob$/);
  await text(alice.page, '#presence', /^online$/);
  await bob.page.fill('#newchat-name', 'alice');
  await bob.page.click('#newchat button');
  await text(bob.page, '#chathead', /^alice$/);
  await alice.page.type('#text', 'hel');
  await text(bob.page, '#typing', /^alice is typing…$/);
  step('presence: bob online for alice; typing: bob sees "alice is typing…"');

  // Bob has the chat open, so the message goes ✓ → ✓✓ → read. His page
  // acknowledges it live, and alice's page asked for SENT_DELIVERED
  // (OPTIONS after WELCOME): one frame brings ✓ and ✓✓ (PROTOCOL.md §3).
  await recordFrames(alice.page);
  await say(alice.page, 'hello bob');
  await text(bob.page, '#messages', /hello bob/);
  await ticks(alice.page, 'hello bob', 'read');
  const live = await answers(alice.page, 'hello bob');
  if (live.length !== 1 || live[0].type !== 'SENT_DELIVERED') {
    throw new Error(`"hello bob" to bob online: wanted one SENT_DELIVERED, got ${JSON.stringify(live)}`);
  }
  step(`live: "hello bob" got SENT_DELIVERED, acknowledged ${live[0].delivered - live[0].time} ms after its DELIVER`);
  await say(bob.page, 'hi alice');
  await text(alice.page, '#messages', /hi alice/);
  await ticks(bob.page, 'hi alice', 'read');
  await shot(alice.page, '1-alice-chat');
  step('1:1: both messages arrived and reached "read"');

  // Bob leaves: alice sees him offline, and her messages keep one tick.
  await bob.page.close();
  await text(alice.page, '#presence', /^last seen /);
  await say(alice.page, 'are you there?');
  await say(alice.page, 'lunch at noon');
  await ticks(alice.page, 'lunch at noon', 'sent');
  await ticks(alice.page, 'are you there?', 'sent');
  await alice.page.fill('#newgroup-name', 'team');
  await alice.page.fill('#newgroup-members', 'bob');
  await alice.page.click('#newgroup button');
  await text(alice.page, '#chathead', /^# team$/);
  await text(alice.page, '#lock', /end-to-end encrypted \(sender keys\)/);
  await say(alice.page, 'welcome to the team');
  await ticks(alice.page, 'welcome to the team', 'sent');
  await shot(alice.page, '2-alice-bob-offline');
  step('bob offline: alice sees "last seen"; two 1:1 messages and a group message (sender keys) stay at ✓');

  // Bob comes back: his page resumes with the kept token and drains his
  // inbox; alice's ticks move to ✓✓ once his page has stored them.
  bob = { ...bob, page: await bob.ctx.newPage() };
  await bob.page.goto(withQuery(''));
  await text(bob.page, '#status', /^connected$/);
  if (await bob.page.isVisible('#login')) throw new Error('bob had to log in again: RESUME did not happen');
  await ticks(alice.page, 'welcome to the team', 'delivered');
  await openChat(alice.page, 'bob');
  await ticks(alice.page, 'lunch at noon', 'delivered', true);
  await ticks(alice.page, 'are you there?', 'delivered', true);
  for (const body of ['lunch at noon', 'are you there?']) {
    const got = (await answers(alice.page, body)).map((f) => f.type).join(' ');
    if (got !== 'SENT RECEIPT') throw new Error(`"${body}" to bob offline: wanted SENT, then a RECEIPT; got ${got}`);
  }
  step('bob back (RESUME, no password): alice sees ✓✓ for the backlog (stored: SENT, then a RECEIPT)');

  await openChat(bob.page, 'alice');
  await text(bob.page, '#messages', /are you there\?.*lunch at noon/);
  await ticks(alice.page, 'lunch at noon', 'read');
  await ticks(alice.page, 'are you there?', 'read');
  await openChat(bob.page, '# team');
  await text(bob.page, '#messages', /alice.*created the group.*welcome to the team/);
  await say(bob.page, 'thanks!');
  await openChat(alice.page, '# team');
  await text(alice.page, '#messages', /bob\s*thanks!/);
  await ticks(bob.page, 'thanks!', 'read');
  for (const p of [alice, bob]) {
    if ((await p.page.textContent('body')).includes('could not decrypt')) throw new Error(`${p.name}: a message did not decrypt`);
  }
  await shot(bob.page, '3-bob-group');
  step('bob read the backlog in order (alice sees read), and the group works both ways, end to end');

  // A page that pinned another key refuses the server loudly.
  const wrong = serverKey.replace(/^./, (c) => (c === '0' ? '1' : '0'));
  const eve = await person('eve', `?key=${wrong}`);
  await eve.page.fill('#name', 'eve');
  await eve.page.fill('#password', 'password-eve');
  await eve.page.check('#register');
  await eve.page.click('#login-btn');
  await text(eve.page, '#keyalert', /SERVER KEY CHANGED/);
  if (await eve.page.isHidden('#keyalert')) throw new Error('the key alert is hidden');
  await text(eve.page, '#status', /refused: the server key changed/);
  await shot(eve.page, '4-key-refused');
  step('a page pinning another key refused the server before logging in');
  console.log('PASS');
} catch (err) {
  console.log(`FAIL: ${err.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
