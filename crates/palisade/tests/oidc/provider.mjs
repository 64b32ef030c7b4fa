// A real OpenID Connect provider (panva/oidc-provider) for Palisade's end-to-end tests.
//
//   node provider.mjs PORT GENERATION
//
// Listens on 127.0.0.1:PORT with issuer http://127.0.0.1:PORT. Signing keys (RS256 and ES256)
// are generated at start and named by GENERATION (rs-1, es-1 …): restarting with another
// generation is a key rotation. Clients: `app` (client credentials) and `palisade`
// (introspection). Resources: urn:orders:rs256 and urn:orders:es256 give JWT access tokens,
// anything else an opaque token.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 3999);
const generation = process.argv[3] || '1';
const issuer = `http://127.0.0.1:${port}`;

function key(type, options, kid, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

const keys = [
  key('rsa', { modulusLength: 2048 }, `rs-${generation}`, 'RS256'),
  key('ec', { namedCurve: 'P-256' }, `es-${generation}`, 'ES256'),
];

const scope = 'orders:read orders:write';
const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'app',
      client_secret: 'app-secret',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      scope,
    },
    {
      client_id: 'palisade',
      client_secret: 'palisade-introspection-secret',
      grant_types: [],
      redirect_uris: [],
      response_types: [],
    },
  ],
  jwks: { keys },
  scopes: ['orders:read', 'orders:write'],
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true, allowedPolicy: () => true },
    revocation: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:orders:opaque',
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        const base = { scope, audience: 'orders', accessTokenTTL: 600 };
        if (resource === 'urn:orders:rs256') {
          return { ...base, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
        }
        if (resource === 'urn:orders:es256') {
          return { ...base, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } };
        }
        return { ...base, accessTokenFormat: 'opaque' };
      },
    },
  },
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider ${generation} listening on ${issuer}`);
});
process.on('SIGTERM', () => process.exit(0));
