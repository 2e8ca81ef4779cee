import { startTestServer, type TestServer } from '../support/server';

/** 40 characters, as an operator would set. */
const PRODUCTION_SECRET = 'hardening-headers-production-secret-0123';
const SHOP = 'https://shop.example.com';

async function postQuery(server: TestServer, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(server.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ query: '{ __typename }' }),
  });
}

/** What a browser sends before a cross-origin POST with the API's headers. */
function preflight(server: TestServer, origin: string): Promise<Response> {
  return fetch(server.url, {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'content-type, authorization, idempotency-key',
    },
  });
}

function listOf(header: string | null): string[] {
  return (header ?? '')
    .split(',')
    .map((item) => item.trim().toLowerCase())
    .filter((item) => item !== '');
}

function directives(csp: string | null): Map<string, string> {
  const map = new Map<string, string>();
  for (const directive of (csp ?? '').split(';')) {
    const [name, ...values] = directive.trim().split(/\s+/);
    if (name) map.set(name.toLowerCase(), values.join(' '));
  }
  return map;
}

function expectCommonSecurityHeaders(response: Response): void {
  expect(response.headers.get('x-content-type-options')).toBe('nosniff');
  expect(response.headers.get('strict-transport-security')).toMatch(/max-age=\d{7,}/);
  const frameAncestors = directives(response.headers.get('content-security-policy')).get('frame-ancestors');
  const frameOptions = response.headers.get('x-frame-options');
  expect(frameAncestors === "'none'" || frameAncestors === "'self'" || /^(DENY|SAMEORIGIN)$/i.test(frameOptions ?? '')).toBe(true);
}

describe('security headers in development', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ env: { NODE_ENV: 'development' } });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('sends nosniff, HSTS and a framing policy with GraphQL JSON responses', async () => {
    const response = await postQuery(server);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/(graphql-response\+)?json/);
    expectCommonSecurityHeaders(response);
  });

  it('sends the security headers with error responses too', async () => {
    const notAllowed = await fetch(server.url, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(notAllowed.status).toBe(405);
    expectCommonSecurityHeaders(notAllowed);
    const tooLarge = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ __typename }', variables: { padding: 'x'.repeat(200 * 1024) } }),
    });
    expect(tooLarge.status).toBe(413);
    expectCommonSecurityHeaders(tooLarge);
  });

  it('serves the explorer page without a default-src none policy that would block it', async () => {
    const response = await fetch(server.url, { headers: { accept: 'text/html' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await response.text()).toContain('id="graphiql"');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(directives(response.headers.get('content-security-policy')).get('default-src')).not.toBe("'none'");
  });

  it('sends no CORS headers when CORS_ORIGINS is not set, to a preflight or a request', async () => {
    const options = await preflight(server, SHOP);
    expect(options.headers.get('access-control-allow-origin')).toBeNull();
    expect(options.headers.get('access-control-allow-headers')).toBeNull();
    const post = await postQuery(server, { origin: SHOP });
    expect(post.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('security headers in production', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ env: { NODE_ENV: 'production', JWT_SECRET: PRODUCTION_SECRET } });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("sends a content security policy of default-src 'none' with the common security headers", async () => {
    const response = await postQuery(server);
    expect(response.status).toBe(200);
    expectCommonSecurityHeaders(response);
    const csp = directives(response.headers.get('content-security-policy'));
    expect(csp.get('default-src')).toBe("'none'");
    expect(csp.get('frame-ancestors')).toBe("'none'");
  });

  it("keeps the policy on a browser's GET of /graphql, where no Sandbox is served", async () => {
    const response = await fetch(server.url, { headers: { accept: 'text/html' } });
    expect(response.headers.get('content-type') ?? '').not.toMatch(/^text\/html/);
    expect(directives(response.headers.get('content-security-policy')).get('default-src')).toBe("'none'");
  });
});

describe('CORS with CORS_ORIGINS', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ env: { CORS_ORIGINS: SHOP } });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('answers a preflight from an allowed origin with the origin and the headers the API needs', async () => {
    const response = await preflight(server, SHOP);
    expect(response.status).toBeLessThan(300);
    expect(response.headers.get('access-control-allow-origin')).toBe(SHOP);
    expect(listOf(response.headers.get('access-control-allow-methods'))).toEqual(expect.arrayContaining(['post']));
    expect(listOf(response.headers.get('access-control-allow-headers'))).toEqual(
      expect.arrayContaining(['content-type', 'authorization', 'idempotency-key']),
    );
    expect(listOf(response.headers.get('vary'))).toContain('origin');
  });

  it('exposes Idempotent-Replayed and X-Request-Id to an allowed origin', async () => {
    const response = await postQuery(server, { origin: SHOP });
    expect(response.status).toBe(200);
    expect(response.headers.get('access-control-allow-origin')).toBe(SHOP);
    expect(listOf(response.headers.get('access-control-expose-headers'))).toEqual(
      expect.arrayContaining(['idempotent-replayed', 'x-request-id']),
    );
  });

  it('gives another origin no CORS headers', async () => {
    for (const origin of ['https://evil.example.com', 'https://shop.example.com.evil.example', 'http://shop.example.com']) {
      const options = await preflight(server, origin);
      expect(options.headers.get('access-control-allow-origin')).toBeNull();
      const post = await postQuery(server, { origin });
      expect(post.headers.get('access-control-allow-origin')).toBeNull();
    }
  });
});
