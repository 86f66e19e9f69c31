// The interop test: pages in headless Chromium and a real `chatd chat`
// exchange end-to-end encrypted messages through chatd, both ways, with
// sessions started from either side. Run by chat_browser_test.go (the
// root package), which plays `chatd chat` as alice:
//   node test/interop.mjs BASE_URL SERVER_KEY
// It prints "STEP name" when the Go side should act, waits for "go NAME"
// lines on stdin when it must wait for the Go side, and ends with PASS.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

const [base, serverKey] = process.argv.slice(2);
const TIMEOUT = 30000;
const lines = createInterface({ input: process.stdin });
const waiting = [];
const queued = [];
lines.on('line', (l) => (waiting.length ? waiting.shift()(l) : queued.push(l)));
const next = () => (queued.length ? Promise.resolve(queued.shift()) : new Promise((r) => waiting.push(r)));
async function go(name) {
  const l = await next();
  if (l !== `go ${name}`) throw new Error(`wanted "go ${name}" from the Go side, got ${JSON.stringify(l)}`);
}
const url = (() => {
  const u = new URL(base);
  u.searchParams.set('key', serverKey);
  return u.toString();
})();

const browser = await chromium.launch({
  executablePath: process.env.CHATD_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});

async function text(page, selector, re) {
  try {
    await page.waitForFunction(([sel, src, flags]) => {
      const el = document.querySelector(sel);
      return el && new RegExp(src, flags).test(el.textContent);
    }, [selector, re.source, re.flags], { timeout: TIMEOUT });
  } catch {
    const got = await page.textContent(selector).catch(() => '(no element)');
    throw new Error(`${selector} never matched ${re}: it reads ${JSON.stringify(got)}`);
  }
}

async function person(name) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.log(`[${name} page error] ${e.message}`));
  await page.goto(url);
  await page.fill('#name', name);
  await page.fill('#password', `password-${name}`);
  await page.check('#register');
  await page.click('#login-btn');
  await text(page, '#status', /^connected$/);
  await text(page, '#e2e', /^end-to-end encryption: on$/);
  return { name, ctx, page };
}

async function say(page, body) {
  await page.fill('#text', body);
  await page.click('#send');
}

async function delivered(page, body) {
  await page.waitForFunction((b) => [...document.querySelectorAll('#messages li.out')].some((li) =>
    li.querySelector('.body').textContent === b && ['delivered', 'read'].includes(li.querySelector('.ticks').dataset.state)),
  body, { timeout: TIMEOUT }).catch(() => { throw new Error(`"${body}" never reached ✓✓`); });
}

async function noUndecrypted(p) {
  const body = await p.page.textContent('#messages');
  if (body.includes('could not decrypt')) throw new Error(`${p.name}'s page: ${body}`);
}

try {
  // Chat starts the session: Go is the PQXDH initiator, the page responds.
  let bob = await person('bob');
  console.log('STEP bob-ready');
  await text(bob.page, '#chats', /alice/);
  await bob.page.click('#chats li:has(.title:text-is("alice"))');
  await text(bob.page, '#messages', /hello bob from chatd chat/);
  await say(bob.page, 'hi alice, sealed by the browser');
  await delivered(bob.page, 'hi alice, sealed by the browser');
  await noUndecrypted(bob);
  console.log('STEP bob-replied');

  // The page goes away; chat writes to it; the message waits on the
  // server's disk (which the Go side scans), then the page comes back.
  await go('bob-offline');
  await bob.page.close();
  console.log('STEP bob-closed');
  await go('bob-return');
  bob = { ...bob, page: await bob.ctx.newPage() };
  await bob.page.goto(url);
  await text(bob.page, '#status', /^connected$/);
  await bob.page.click('#chats li:has(.title:text-is("alice"))');
  await text(bob.page, '#messages', /the-vault-code-is-7001-zebra/);
  await noUndecrypted(bob);
  console.log('STEP bob-read-backlog');

  // The page starts the session: it fetches alice's bundle (JS PQXDH
  // initiator), chat responds.
  const carol = await person('carol');
  await carol.page.fill('#newchat-name', 'alice');
  await carol.page.click('#newchat button');
  await text(carol.page, '#chathead', /^alice$/);
  await say(carol.page, 'carol starts this session');
  await delivered(carol.page, 'carol starts this session');
  console.log('STEP carol-said');
  await text(carol.page, '#messages', /welcome carol/);
  await say(carol.page, 'and the ratchet turns');
  await delivered(carol.page, 'and the ratchet turns');
  await noUndecrypted(carol);
  const safety = await (async () => {
    await carol.page.click('#safety');
    await text(carol.page, '#flash', /^safety number with alice: /);
    return (await carol.page.textContent('#flash')).replace(/^safety number with alice: /, '');
  })();
  console.log(`SAFETY carol alice ${safety}`);

  // A group of the three: the pages and chat each send once, sealed with
  // their sender key; everyone reads everyone.
  await carol.page.fill('#newgroup-name', 'team');
  await carol.page.fill('#newgroup-members', 'alice bob');
  await carol.page.click('#newgroup button');
  await text(carol.page, '#chathead', /^# team$/);
  const group = (await carol.page.evaluate(() => window.chatd.current)).slice(2);
  await say(carol.page, 'hello team from the page');
  await delivered(carol.page, 'hello team from the page');
  console.log(`STEP group ${group}`);
  await text(bob.page, '#chats', /# team/);
  await bob.page.click('#chats li:has(.title:text-is("# team"))');
  await text(bob.page, '#messages', /hello team from the page/);
  await say(bob.page, 'bob to the team');
  await delivered(bob.page, 'bob to the team');
  console.log('STEP bob-said-to-group');
  await text(bob.page, '#messages', /hello team from chat/);
  await text(carol.page, '#messages', /bob to the team.*hello team from chat/);
  await noUndecrypted(bob);
  await noUndecrypted(carol);

  // Others take bob's one-time KEM keys below the server's threshold: his
  // page gets KEYS_LOW and uploads a new batch.
  console.log('STEP drain-bob');
  await go('drained');
  await text(bob.page, '#e2e', /one-time prekeys refilled \(\d+ EC, \d+ KEM on the server\)/);
  console.log(`REFILL ${await bob.page.textContent('#e2e')}`);
  console.log('PASS');
} catch (err) {
  console.log(`FAIL: ${err.message}`);
  process.exitCode = 1;
} finally {
  lines.close();
  await browser.close();
}
