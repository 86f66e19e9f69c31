// Reads the vectors out of PROTOCOL.md, so the tests follow the spec.
import { readFileSync } from 'node:fs';

const doc = readFileSync(new URL('../../PROTOCOL.md', import.meta.url), 'utf8');

export function hex(s) {
  if (s.length % 2 !== 0 || /[^0-9a-f]/i.test(s)) throw new Error(`not hex: ${s}`);
  return Uint8Array.from(s.match(/../g) ?? [], (b) => parseInt(b, 16));
}

export function toHex(b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function between(begin, end) {
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end, i);
  if (i < 0 || j < 0) throw new Error(`PROTOCOL.md has no ${begin} ... ${end}`);
  return doc.slice(i + begin.length, j);
}

// noiseVectors maps each label of §8's vector block to its bytes.
export function noiseVectors() {
  const out = new Map();
  for (const line of between('<!-- noise-vectors:begin -->', '<!-- noise-vectors:end -->').split('\n')) {
    const m = line.match(/^(.*?)\s{2,}([0-9a-f]+)$/);
    if (m) out.set(m[1].trim(), hex(m[2]));
  }
  return out;
}

// frameVectors returns the annotated frames: title, bytes, and the lines
// as [{hex, field}].
export function frameVectors() {
  const out = [];
  const block = between('<!-- vectors:begin -->', '<!-- vectors:end -->');
  for (const part of block.split(/^#### /m).slice(1)) {
    const title = part.slice(0, part.indexOf('\n')).trim();
    const lines = [];
    for (const line of part.split('\n')) {
      const m = line.match(/^([0-9a-f]+)\s+#\s*(.*)$/);
      if (m) lines.push({ hex: m[1], field: m[2].trim() });
    }
    out.push({ title, lines, bytes: hex(lines.map((l) => l.hex).join('')) });
  }
  return out;
}
