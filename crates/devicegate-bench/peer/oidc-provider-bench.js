// node oidc-provider 9 as the benchmark's peer: the device flow, a public client `bench`,
// its own in-memory adapter (unbounded, below), JWT access tokens (so its token sets match devicegate's:
// JWT access token + ID token + refresh token), and `POST /bench/approve` (form field
// `user_code`) which approves a code through the provider's own API, as its interaction
// pages would after a sign-in, so the bench needs no browser.
//
// Imports oidc-provider from the interop fixture's node_modules (pinned by its package-lock);
// run from this directory: `PORT=… ALG=RS256|ES256|EdDSA [ACCESS_ALG=…] node oidc-provider-bench.js`
// (ACCESS_ALG signs the JWT access tokens; ALG by default).
// Prints "listening <issuer>" once ready.
import { generateKeyPairSync } from 'node:crypto';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const fixture = new URL('../../devicegate/tests/fixtures/oidc-provider/', import.meta.url);
const require = createRequire(fixture);
const index = pathToFileURL(require.resolve('oidc-provider'));
const { default: Provider } = await import(index);
// Its default in-memory adapter keeps an LRU of 1,000 entries: past that, pending codes are
// evicted and polls answer invalid_grant. The same adapter over a store that holds every
// entry until it expires is what a benchmark of many pending grants needs.
const { default: MemoryAdapter } = await import(new URL('adapters/memory_adapter.js', index));
const { default: LRU } = await import(new URL('helpers/lru.js', index));
const storage = new LRU({ maxSize: Number.MAX_SAFE_INTEGER });

const port = Number(process.env.PORT);
if (!port) {
  console.error('PORT is required');
  process.exit(2);
}
const alg = process.env.ALG || 'RS256';
const accessAlg = process.env.ACCESS_ALG || alg;
const issuer = `http://127.0.0.1:${port}`;
// The access tokens' audience, as devicegate's default is its own issuer.
const resource = `${issuer}/api`;
const scope = 'openid offline_access';

// Fresh keys per start: the bench never restarts the peer, and every grant is in memory.
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'bench',
      client_name: 'devicegate bench',
      token_endpoint_auth_method: 'none',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
      response_types: [],
      redirect_uris: [],
      id_token_signed_response_alg: alg,
    },
  ],
  adapter: (model) => new MemoryAdapter(model, storage),
  jwks: {
    keys: [
      { ...rsa, kid: 'rsa', use: 'sig' },
      { ...ed, kid: 'ed', use: 'sig' },
      { ...ec, kid: 'ec', use: 'sig' },
    ],
  },
  features: {
    deviceFlow: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope,
        audience: resource,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: accessAlg } },
      }),
    },
  },
  scopes: ['openid', 'offline_access'],
  findAccount(_ctx, id) {
    return { accountId: id, async claims() { return { sub: id }; } };
  },
  cookies: { keys: ['devicegate-bench-only'] },
});

async function readBody(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return body;
}

provider.use(async (ctx, next) => {
  if (ctx.method !== 'POST' || ctx.path !== '/bench/approve') {
    return next();
  }
  const params = new URLSearchParams(await readBody(ctx.req));
  // oidc-provider stores user codes without the mask's dash, upper case.
  const userCode = (params.get('user_code') || '').replace(/[^a-z0-9]/gi, '').toUpperCase();
  const code = await provider.DeviceCode.findByUserCode(userCode);
  if (!code || code.accountId || code.error) {
    ctx.status = 404;
    ctx.body = { error: 'not_found' };
    return undefined;
  }
  const accountId = 'bench-user';
  const grant = new provider.Grant({ accountId, clientId: code.clientId });
  grant.addOIDCScope(scope);
  grant.addResourceScope(resource, scope);
  code.grantId = await grant.save();
  code.accountId = accountId;
  code.authTime = Math.floor(Date.now() / 1000);
  // What its device-flow resume (lib/actions/authorization/device.js) records from a session.
  code.scope = scope;
  code.resource = resource;
  await code.save();
  ctx.body = { approved: true };
  return undefined;
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
