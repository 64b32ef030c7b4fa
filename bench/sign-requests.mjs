// Writes an Ed25519 public key and an HMAC secret for the benchmark's signature routes, and
// the RFC 9421 headers of a signed GET for each (one signature reused for the whole run: a
// GET's signature is not remembered as a replay, so this measures verification):
//   node bench/sign-requests.mjs OUT_DIR AUTHORITY
import { createHmac, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [out, authority] = process.argv.slice(2);
const created = Math.floor(Date.now() / 1000);
const ed = generateKeyPairSync('ed25519');
writeFileSync(join(out, 'sig-ed.pub.pem'), ed.publicKey.export({ type: 'spki', format: 'pem' }));
const secret = randomBytes(32);
writeFileSync(join(out, 'sig-hmac.secret'), `base64:${secret.toString('base64')}\n`, { mode: 0o600 });

function headers(path, keyid, signer) {
  const params = `("@method" "@authority" "@path");created=${created};keyid="${keyid}"`;
  const base = `"@method": GET\n"@authority": ${authority}\n"@path": ${path}\n"@signature-params": ${params}`;
  return `Signature-Input: sig1=${params}\nSignature: sig1=:${signer(Buffer.from(base)).toString('base64')}:`;
}
writeFileSync(join(out, 'sig-ed.headers'), headers('/sig-ed/bench', 'bench-ed', (b) => sign(null, b, ed.privateKey)));
writeFileSync(join(out, 'sig-hmac.headers'), headers('/sig-hmac/bench', 'bench-hmac', (b) => createHmac('sha256', secret).update(b).digest()));
