// Writes a JWK Set and two long-lived access tokens (RS256 and ES256) for the benchmark's
// identity routes:  node bench/mint-tokens.mjs OUT_DIR
import { generateKeyPairSync, sign } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const out = process.argv[2];
const b64 = (b) => Buffer.from(b).toString('base64url');
const now = Math.floor(Date.now() / 1000);
const claims = { iss: 'https://bench.local', aud: 'bench', sub: 'bench-user', scope: 'bench', iat: now, exp: now + 86400 };

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = (k, kid, alg) => ({ ...k.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' });
writeFileSync(join(out, 'jwks.json'), JSON.stringify({ keys: [jwk(rsa, 'rs', 'RS256'), jwk(ec, 'es', 'ES256')] }));

function token(alg, kid, key, opts) {
  const input = `${b64(JSON.stringify({ alg, kid, typ: 'JWT' }))}.${b64(JSON.stringify(claims))}`;
  const sig = sign(alg === 'RS256' ? 'sha256' : 'sha256', Buffer.from(input), { key, ...opts });
  return `${input}.${b64(sig)}`;
}
writeFileSync(join(out, 'rs256.txt'), token('RS256', 'rs', rsa.privateKey, {}));
writeFileSync(join(out, 'es256.txt'), token('ES256', 'es', ec.privateKey, { dsaEncoding: 'ieee-p1363' }));
