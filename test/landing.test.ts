import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { buildApp } from '../src/http/app';
import type { SandboxOptions } from '../src/http/explorer';
import { type GraphQLResponse, startTestServer, type TestServer } from './support/server';

const PRODUCTION_SECRET = 'production-secret-for-tests-0123456789abcd';

interface SandboxConfig {
  initialState: {
    document: string;
    variables: Record<string, unknown>;
    headers: Record<string, string>;
  };
}

type ExplorerKind = 'graphiql' | 'sandbox';

interface Page {
  status: number;
  contentType: string;
  body: string;
}

/** What a browser gets for GET /graphql. */
async function landingPage(url: string): Promise<Page> {
  const response = await fetch(url, { headers: { accept: 'text/html' } });
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', body: await response.text() };
}

/** What the page opens with: the configuration handed to Apollo's embeddable Sandbox, or to GraphiQL. */
function sandboxConfig(html: string): SandboxConfig {
  const sandbox = /var embeddedSandboxConfig = (\{.*\});/.exec(html)?.[1];
  if (sandbox !== undefined) return JSON.parse(sandbox) as SandboxConfig;
  const graphiql = /<script id="explorer-config" type="application\/json">(.*?)<\/script>/.exec(html)?.[1];
  if (graphiql === undefined) throw new Error(`no explorer configuration in the page:\n${html.slice(0, 500)}`);
  return { initialState: JSON.parse(graphiql) as SandboxConfig['initialState'] };
}

/** The marker each explorer's page carries. */
const PAGE_MARKER: Record<ExplorerKind, string> = { sandbox: 'embeddable-sandbox', graphiql: 'id="graphiql"' };

async function post<T>(url: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<GraphQLResponse<T>> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, body: (await response.json()) as GraphQLResponse<T>['body'] };
}

/** The app main.ts builds: the test server's pieces plus the landing page contents main.ts passes. */
async function startAppWithSandbox(server: TestServer, sandbox: SandboxOptions): Promise<{ app: FastifyInstance; url: string }> {
  const app = await buildApp({ config: server.config, orm: server.orm, logger: pino({ level: 'silent' }), sandbox });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { app, url: `http://127.0.0.1:${port}/graphql` };
}

async function firstProductId(server: TestServer): Promise<string> {
  const result = await server.gql<{ products: { edges: { node: { id: string } }[] } }>('{ products(first: 1) { edges { node { id } } } }');
  const id = result.body.data?.products.edges[0]?.node.id;
  if (!id) throw new Error('the demo catalog is empty');
  return id;
}

describe.each<ExplorerKind>(['graphiql', 'sandbox'])('landing page in development (GRAPHQL_EXPLORER=%s)', (kind) => {
  let server: TestServer;
  let app: FastifyInstance;
  let url: string;
  let token: string;
  let productId: string;

  beforeAll(async () => {
    server = await startTestServer({ env: { NODE_ENV: 'development', GRAPHQL_EXPLORER: kind } });
    token = await server.token('dev-user');
    productId = await firstProductId(server);
    ({ app, url } = await startAppWithSandbox(server, { token, exampleProductId: productId }));
  });
  afterAll(async () => {
    await app?.close();
    await server?.close();
  });

  it('serves the explorer to a browser on GET /graphql', async () => {
    const page = await landingPage(server.url);
    expect(page.status).toBe(200);
    expect(page.contentType).toMatch(/^text\/html/);
    expect(page.body).toContain(PAGE_MARKER[kind]);
    expect(sandboxConfig(page.body).initialState.document).toContain('createOrder(');
  });

  it('opens on a createOrder example with a development bearer token that authenticates', async () => {
    const page = await landingPage(url);
    expect(page.status).toBe(200);
    const { initialState } = sandboxConfig(page.body);
    expect(initialState.document).toMatch(/mutation \w+\([^)]*\)\s*\{\s*createOrder\(/);
    expect(initialState.headers.Authorization).toBe(`Bearer ${token}`);

    const viewer = await post<{ viewer: { id: string } | null }>(
      url,
      { query: '{ viewer { id } }' },
      { authorization: initialState.headers.Authorization ?? '' },
    );
    expect(viewer.body.errors).toBeUndefined();
    expect(viewer.body.data?.viewer?.id).toBe('dev-user');
  });

  it('pre-fills a valid Idempotency-Key header next to the example', async () => {
    const { initialState } = sandboxConfig((await landingPage(url)).body);
    expect(initialState.headers['Idempotency-Key']).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
  });

  it('places one order when the pre-filled example is run twice with the page headers and variables', async () => {
    const { initialState } = sandboxConfig((await landingPage(url)).body);
    expect(initialState.variables).toMatchObject({ input: { lines: [{ productId, quantity: 1 }] } });

    const run = () =>
      post<{ createOrder: { order: { id: string; status: string } } }>(
        url,
        { query: initialState.document, operationName: 'CreateOrder', variables: initialState.variables },
        initialState.headers,
      );
    const first = await run();
    expect(first.body.errors).toBeUndefined();
    expect(first.body.data?.createOrder.order).toMatchObject({ id: expect.any(String), status: 'PLACED' });
    const second = await run();
    expect(second.body.errors).toBeUndefined();
    expect(second.body.data?.createOrder.order.id).toBe(first.body.data?.createOrder.order.id);
  });

  it('opens with the ready operations: browse, order, its record and my orders, sharing the header key', async () => {
    const { initialState } = sandboxConfig((await landingPage(url)).body);
    for (const operation of ['query Products', 'mutation CreateOrder', 'query IdempotencyRecord', 'query MyOrders']) {
      expect(initialState.document).toContain(operation);
    }
    expect(initialState.variables).toMatchObject({ key: initialState.headers['Idempotency-Key'] });
  });

  it('shows the record of the pre-filled key after the example order ran', async () => {
    const { initialState } = sandboxConfig((await landingPage(url)).body);
    const run = (operationName: string) =>
      post<Record<string, { outcome?: string; key?: string } | null>>(
        url,
        { query: initialState.document, operationName, variables: initialState.variables },
        initialState.headers,
      );
    expect((await run('CreateOrder')).body.errors).toBeUndefined();
    const record = await run('IdempotencyRecord');
    expect(record.body.errors).toBeUndefined();
    expect(record.body.data?.idempotencyRecord).toMatchObject({ key: initialState.headers['Idempotency-Key'], outcome: 'SUCCEEDED' });
  });

  it('answers introspection', async () => {
    const result = await server.gql<{ __schema: { types: { name: string }[] } }>('{ __schema { types { name } } }');
    expect(result.body.errors).toBeUndefined();
    expect(result.body.data?.__schema.types.map((type) => type.name)).toContain('CreateOrderInput');
  });
});

describe('landing page in production', () => {
  let server: TestServer;
  let app: FastifyInstance;
  let url: string;
  let token: string;

  beforeAll(async () => {
    server = await startTestServer({ env: { NODE_ENV: 'production', JWT_SECRET: PRODUCTION_SECRET } });
    expect(server.config.http.explorer).toBe('off');
    token = await server.token('dev-user');
    ({ app, url } = await startAppWithSandbox(server, { token, exampleProductId: await firstProductId(server) }));
  });
  afterAll(async () => {
    await app?.close();
    await server?.close();
  });

  it('does not serve the Sandbox on GET /graphql', async () => {
    const page = await landingPage(server.url);
    expect(page.body).not.toContain('embeddable-sandbox');
    expect(page.contentType).not.toMatch(/^text\/html/);
  });

  it('does not serve the Sandbox, nor its token, even when main.ts passes the landing page contents', async () => {
    const page = await landingPage(url);
    expect(page.body).not.toContain('embeddable-sandbox');
    expect(page.body).not.toContain(token);
  });

  it('rejects introspection with GRAPHQL_VALIDATION_FAILED', async () => {
    const result = await server.gql('{ __schema { types { name } } }');
    expect(result.body.data).toBeUndefined();
    expect(result.body.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
  });
});

describe.each<ExplorerKind>(['graphiql', 'sandbox'])('GRAPHQL_EXPLORER=%s with a production configuration', (kind) => {
  let server: TestServer;
  let app: FastifyInstance;
  let url: string;
  let token: string;

  beforeAll(async () => {
    server = await startTestServer({ env: { NODE_ENV: 'production', JWT_SECRET: PRODUCTION_SECRET, GRAPHQL_EXPLORER: kind } });
    token = await server.token('dev-user');
    ({ app, url } = await startAppWithSandbox(server, { token, exampleProductId: await firstProductId(server) }));
  });
  afterAll(async () => {
    await app?.close();
    await server?.close();
  });

  it('serves the explorer with its Idempotency-Key header but never a token, even when one is handed in', async () => {
    const page = await landingPage(url);
    expect(page.body).toContain(PAGE_MARKER[kind]);
    expect(page.body).not.toContain(token);
    const { initialState } = sandboxConfig(page.body);
    expect(Object.keys(initialState.headers)).toEqual(['Idempotency-Key']);
  });
});

describe.each(['development', 'test', 'production'])('error responses in %s', (nodeEnv) => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ env: { NODE_ENV: nodeEnv, JWT_SECRET: PRODUCTION_SECRET } });
  });
  afterAll(async () => {
    await server?.close();
  });

  function expectNoStackTrace(response: GraphQLResponse): void {
    expect(response.body.errors?.length).toBeGreaterThan(0);
    for (const error of response.body.errors ?? []) {
      expect(error.extensions ?? {}).not.toHaveProperty('stacktrace');
      expect(error.extensions ?? {}).not.toHaveProperty('exception');
    }
    expect(JSON.stringify(response.body)).not.toMatch(/stacktrace|\n\s+at /);
  }

  it('answers a syntax error with GRAPHQL_PARSE_FAILED and no stack trace', async () => {
    const response = await server.gql('{ products(');
    expect(response.body.errors?.[0]?.extensions?.code).toBe('GRAPHQL_PARSE_FAILED');
    expectNoStackTrace(response);
  });

  it('answers an unknown field with GRAPHQL_VALIDATION_FAILED and no stack trace', async () => {
    const response = await server.gql('{ products { totalCount } }');
    expect(response.body.errors?.[0]?.extensions?.code).toBe('GRAPHQL_VALIDATION_FAILED');
    expectNoStackTrace(response);
  });

  it('answers a variable of the wrong type with BAD_USER_INPUT and no stack trace', async () => {
    const response = await server.gql('query ($first: Int!) { products(first: $first) { pageInfo { hasNextPage } } }', { first: 'ten' });
    expect(response.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expectNoStackTrace(response);
  });

  it('answers a client error thrown by a resolver with its code and no stack trace', async () => {
    const response = await server.gql('{ product(id: "not-a-uuid") { id } }');
    expect(response.body.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
    expectNoStackTrace(response);
  });

  it('answers a forged bearer token with UNAUTHENTICATED and no stack trace', async () => {
    const response = await server.gql('{ viewer { id } }', undefined, { token: 'not.a.token' });
    expect(response.status).toBe(401);
    expect(response.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expectNoStackTrace(response);
  });
});
