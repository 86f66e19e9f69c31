// The only primitives chatd's Noise suite (25519, ChaChaPoly, BLAKE2s)
// needs, bundled by `npm run build` into vendor/noble.js so that the page
// loads one file and the server serves web/ with no build step.
export { x25519 } from '@noble/curves/ed25519.js';
export { blake2s } from '@noble/hashes/blake2.js';
export { hmac } from '@noble/hashes/hmac.js';
export { chacha20poly1305 } from '@noble/ciphers/chacha.js';
