// Connects to a running `chatd serve --ws-addr`, completes Noise XX over the
// WebSocket binding and makes PING/PONG round trips:
//   node --experimental-websocket live-check.js ws://127.0.0.1:7423/chatd [server key hex]
import { connect, pingFrame, pongNonce } from './chatd.js';

const [url, pin] = process.argv.slice(2);
const rounds = 100;
const conn = await connect(url, { pin });
const start = performance.now();
for (let i = 1; i <= rounds; i++) {
  const got = await new Promise((resolve, reject) => {
    conn.onframe = (f) => resolve(pongNonce(f));
    conn.onclose = reject;
    conn.send(pingFrame(i));
  });
  if (got !== BigInt(i)) throw new Error(`PONG ${got} for PING ${i}`);
}
const us = ((performance.now() - start) * 1000) / rounds;
console.log(`PASS: server key ${conn.serverKey}, ${rounds} sealed PING/PONG round trips, ${us.toFixed(0)} us each`);
conn.close();
