// The page's script: connect to the server named by ?ws= (default: the
// page's own host, path /chatd), pin ?pin= if given, and show the server's
// key and a sealed PING/PONG round trip. The chat UI comes next.
import { connect, pingFrame, pongNonce } from './chatd.js';

const q = new URLSearchParams(location.search);
const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
const url = q.get('ws') || `${scheme}//${location.host}/chatd`;
const status = document.getElementById('status');
const out = document.getElementById('out');
const log = (line) => { out.textContent += line + '\n'; };

try {
  log(`connecting to ${url}`);
  const conn = await connect(url, { pin: q.get('pin') || undefined });
  log(`Noise XX done; server key ${conn.serverKey}`);
  const t0 = performance.now();
  const nonce = await new Promise((resolve, reject) => {
    conn.onframe = (f) => resolve(pongNonce(f));
    conn.onclose = reject;
    conn.send(pingFrame(42));
  });
  if (nonce !== 42n) throw new Error(`PONG ${nonce}, want 42`);
  log(`PING/PONG in ${(performance.now() - t0).toFixed(1)} ms`);
  conn.close();
  status.textContent = 'PASS';
} catch (err) {
  log(String(err));
  status.textContent = 'FAIL';
}
