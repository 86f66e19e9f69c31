// The primitives the page needs, bundled by `npm run build` into
// vendor/noble.js so that the page loads one file and the server serves
// web/ with no build step: chatd's Noise suite (25519, ChaChaPoly,
// BLAKE2s) and the end-to-end layer (XEdDSA on the Edwards form of
// Curve25519, SHA-256/512, HKDF, ML-KEM-1024; PROTOCOL.md section 14).
export { ed25519, x25519 } from '@noble/curves/ed25519.js';
export { blake2s } from '@noble/hashes/blake2.js';
export { hmac } from '@noble/hashes/hmac.js';
export { hkdf } from '@noble/hashes/hkdf.js';
export { sha256, sha512 } from '@noble/hashes/sha2.js';
export { chacha20poly1305 } from '@noble/ciphers/chacha.js';
export { ml_kem1024 } from '@noble/post-quantum/ml-kem.js';
