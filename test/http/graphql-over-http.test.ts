import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import { registerGraphQLOverHttp } from '../../src/http/graphql-over-http';
import { codesOf } from '../support/responses';
import { startTestServer, type TestServer } from '../support/server';

// Every requirement here is listed in docs/graphql-over-http.md with the test that covers it.

const JSON_TYPE = 'application/json; charset=utf-8';
const GRAPHQL_RESPONSE = 'application/graphql-response+json; charset=utf-8';
const QUERY = '{ products(first: 1) { edges { node { id } } } }';
const PLACE_ORDER = 'mutation Place($input: CreateOrderInput!) { createOrder(input: $input) { order { id } } }';
const PREFLIGHT = { 'apollo-require-preflight': 'true' };

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  body: { data?: unknown; errors?: { message: string; extensions?: { code?: string } }[] };
}

/** One HTTP exchange with full control of method, headers and raw body. */
async function exchange(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array } = {},
): Promise<Answer> {
  const response = await fetch(url, { method: init.method ?? 'POST', headers: init.headers, body: init.body });
  const text = await response.text();
  let body: Answer['body'] = {};
  try {
    body = JSON.parse(text) as Answer['body'];
  } catch {
    // Non-JSON bodies (the landing page) are checked through `text`.
  }
  return { status: response.status, headers: response.headers, text, body };
}

describe('GraphQL over HTTP on /graphql', () => {
  let server: TestServer;
  let productId: string;

  beforeAll(async () => {
    server = await startTestServer();
    const products = await server.gql<{ products: { edges: { node: { id: string } }[] } }>(QUERY);
    productId = products.body.data?.products.edges[0]?.node.id ?? '';
    expect(productId).not.toBe('');
  });
  afterAll(async () => {
    await server?.close();
  });

  const post = (body: unknown, headers: Record<string, string> = {}) =>
    exchange(server.url, { headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const get = (params: Record<string, string>, headers: Record<string, string> = PREFLIGHT) =>
    exchange(`${server.url}?${new URLSearchParams(params)}`, { method: 'GET', headers });

  /** A fresh user and what it takes to place an order as that user. */
  async function buyer(): Promise<{ headers: Record<string, string>; body: string; orders: () => Promise<number> }> {
    const token = await server.token(`buyer-${randomUUID()}`);
    const headers = { authorization: `Bearer ${token}`, 'idempotency-key': randomUUID() };
    const body = JSON.stringify({ query: PLACE_ORDER, variables: { input: { lines: [{ productId, quantity: 1 }] } } });
    const orders = async () => {
      const result = await server.gql<{ orders: { edges: unknown[] } }>('{ orders(first: 100) { edges { cursor } } }', undefined, {
        token,
      });
      return result.body.data?.orders.edges.length ?? -1;
    };
    return { headers, body, orders };
  }

  describe('media types', () => {
    it('answers application/json when the client sends no Accept header', async () => {
      const answer = await post({ query: QUERY });
      expect(answer.status).toBe(200);
      expect(answer.headers.get('content-type')).toBe(JSON_TYPE);
      expect(answer.body.data).toBeDefined();
    });

    it('answers application/graphql-response+json to a client that accepts it', async () => {
      const answer = await post({ query: QUERY }, { accept: 'application/graphql-response+json' });
      expect(answer.status).toBe(200);
      expect(answer.headers.get('content-type')).toBe(GRAPHQL_RESPONSE);
    });

    it('answers application/json to a client that accepts only application/json', async () => {
      const answer = await post({ query: QUERY }, { accept: 'application/json' });
      expect(answer.headers.get('content-type')).toBe(JSON_TYPE);
    });

    it('answers in the media type the client ranks highest', async () => {
      const both = 'application/graphql-response+json; charset=utf-8, application/json; charset=utf-8';
      expect((await post({ query: QUERY }, { accept: both })).headers.get('content-type')).toBe(GRAPHQL_RESPONSE);
      const jsonFirst = 'application/graphql-response+json;q=0.5, application/json';
      expect((await post({ query: QUERY }, { accept: jsonFirst })).headers.get('content-type')).toBe(JSON_TYPE);
      const notJson = '*/*, application/json;q=0';
      expect((await post({ query: QUERY }, { accept: notJson })).headers.get('content-type')).toBe(GRAPHQL_RESPONSE);
    });

    it('refuses with 406 before executing anything when the client accepts neither JSON type', async () => {
      const { headers, body, orders } = await buyer();
      const answer = await exchange(server.url, {
        headers: { ...headers, 'content-type': 'application/json', accept: 'text/plain' },
        body,
      });
      expect(answer.status).toBe(406);
      expect(codesOf(answer)).toEqual(['BAD_REQUEST']);
      expect(await orders()).toBe(0);
    });

    it('states charset=utf-8 in the Content-Type of every answer, its own refusals included', async () => {
      const answers = [
        await post({ query: QUERY }),
        await post({ query: '{' }, { accept: 'application/graphql-response+json' }),
        await post({ query: QUERY }, { accept: 'text/plain' }),
        await exchange(server.url, { headers: { 'content-type': 'text/plain' }, body: QUERY }),
        await exchange(server.url, { headers: { 'content-type': 'application/json' }, body: '{"query":' }),
      ];
      expect(answers.map((answer) => answer.headers.get('content-type'))).toEqual([
        JSON_TYPE,
        GRAPHQL_RESPONSE,
        JSON_TYPE,
        JSON_TYPE,
        JSON_TYPE,
      ]);
    });

    it.each([
      'application/json',
      'application/json; charset=utf-8',
      'application/json;charset="UTF-8"',
    ])('reads a %s request body as UTF-8', async (contentType) => {
      const answer = await exchange(server.url, {
        headers: { 'content-type': contentType },
        body: JSON.stringify({ query: '{ product(id: "café-✓-注文") { id } }' }),
      });
      expect(answer.status).toBe(200);
      expect(answer.body.errors?.[0]?.message).toContain('café-✓-注文');
    });

    it.each(['iso-8859-1', 'utf-16'])('refuses a request body in charset %s with 415 and executes nothing', async (charset) => {
      const { headers, body, orders } = await buyer();
      const answer = await exchange(server.url, { headers: { ...headers, 'content-type': `application/json; charset=${charset}` }, body });
      expect(answer.status).toBe(415);
      expect(codesOf(answer)).toEqual(['BAD_REQUEST']);
      expect(await orders()).toBe(0);
    });

    it('refuses a POST without Content-Type with 415', async () => {
      // fetch labels a string body text/plain; bytes go out with no Content-Type at all.
      const answer = await exchange(server.url, { body: new TextEncoder().encode(JSON.stringify({ query: QUERY })) });
      expect(answer.status).toBe(415);
      expect(answer.body.errors?.[0]?.message).toMatch(/Content-Type: application\/json/);
    });

    it.each([
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/graphql',
    ])('refuses a %s POST with 415 and executes nothing', async (contentType) => {
      // text/plain, forms and multipart are what a cross-site page can send without a preflight.
      const { headers, body, orders } = await buyer();
      const answer = await exchange(server.url, { headers: { ...headers, ...PREFLIGHT, 'content-type': contentType }, body });
      expect(answer.status).toBe(415);
      expect(await orders()).toBe(0);
    });

    it('still serves the explorer page to a browser on GET while the explorer is on', async () => {
      const answer = await exchange(server.url, { method: 'GET', headers: { accept: 'text/html' } });
      expect(answer.status).toBe(200);
      expect(answer.headers.get('content-type')).toMatch(/^text\/html/);
      expect(answer.text).toContain('id="graphiql"');
    });
  });

  describe('GET', () => {
    it('executes a query given in the URL with JSON-encoded variables and extensions and an operationName', async () => {
      const answer = await get({
        query: 'query Two($first: Int) { products(first: $first) { edges { node { id } } } } query Other { __typename }',
        operationName: 'Two',
        variables: JSON.stringify({ first: 2 }),
        extensions: JSON.stringify({}),
      });
      expect(answer.status).toBe(200);
      expect(answer.body.data).toMatchObject({
        products: { edges: [{ node: { id: expect.any(String) } }, { node: { id: expect.any(String) } }] },
      });
    });

    it.each([
      ['variables', 'not json'],
      ['variables', '[1]'],
      ['variables', '"{}"'],
      ['extensions', '[1]'],
    ])('refuses %s=%s in the URL with 400', async (name, value) => {
      const answer = await get({ query: QUERY, [name]: value });
      expect(answer.status).toBe(400);
      expect(codesOf(answer)).toEqual(['BAD_REQUEST']);
    });

    it('treats an empty operationName in the URL as no operationName', async () => {
      const answer = await get({ query: QUERY, operationName: '' });
      expect(answer.status).toBe(200);
      expect(answer.body.errors).toBeUndefined();
      expect(answer.body.data).toBeDefined();
    });

    it('treats variables=null and extensions=null in the URL as absent', async () => {
      const answer = await get({ query: QUERY, variables: 'null', extensions: 'null' });
      expect(answer.status).toBe(200);
      expect(answer.body.data).toBeDefined();
    });

    it.each([
      ['a lone mutation', PLACE_ORDER, undefined, 'application/json'],
      ['a mutation chosen by operationName', `query Peek { __typename } ${PLACE_ORDER}`, 'Place', 'application/graphql-response+json'],
    ])('refuses %s over GET with 405 and Allow: POST and executes nothing', async (_case, query, operationName, accept) => {
      const { headers, orders } = await buyer();
      const variables = JSON.stringify({ input: { lines: [{ productId, quantity: 1 }] } });
      const answer = await get({ query, variables, ...(operationName ? { operationName } : {}) }, { ...PREFLIGHT, ...headers, accept });
      expect(answer.status).toBe(405);
      expect(answer.headers.get('allow')).toBe('POST');
      expect(await orders()).toBe(0);
    });

    it('executes a GET query without a preflight-forcing header: bearer tokens, not cookies, authenticate', async () => {
      const answered = await get({ query: QUERY }, {});
      expect(answered.status).toBe(200);
      expect(answered.body.errors).toBeUndefined();
      expect((await get({ query: QUERY }, { 'x-apollo-operation-name': 'Products' })).status).toBe(200);
      expect((await get({ query: QUERY }, { 'content-type': 'application/json' })).status).toBe(200);
    });
  });

  describe('POST body', () => {
    it.each([
      ['application/json'],
      ['application/graphql-response+json'],
    ])('refuses a body that is not JSON with 400 and a GraphQL error in %s', async (accept) => {
      for (const body of ['NONSENSE', '{"query":', '']) {
        const answer = await exchange(server.url, { headers: { 'content-type': 'application/json', accept }, body });
        expect(answer.status).toBe(400);
        expect(answer.headers.get('content-type')).toBe(`${accept}; charset=utf-8`);
        expect(codesOf(answer)).toEqual(['BAD_REQUEST']);
      }
    });

    it.each([
      ['a misspelt query', { qeury: QUERY }],
      ['a numeric query', { query: 7 }],
      ['a null query', { query: null }],
      ['a parsed document as query', { query: { kind: 'Document', definitions: [] } }],
      ['an empty object', {}],
      ['a JSON string', 'query'],
    ])('refuses %s with 400', async (_case, body) => {
      const answer = await post(body);
      expect(answer.status).toBe(400);
      expect(codesOf(answer)).toEqual(['BAD_REQUEST']);
    });

    it.each([
      ['variables as an array', { variables: [7] }],
      ['variables as a JSON string', { variables: '{}' }],
      ['extensions as an array', { extensions: [1] }],
      ['operationName as a number', { operationName: 1 }],
    ])('refuses %s with 400', async (_case, parameters) => {
      const answer = await post({ query: QUERY, ...parameters });
      expect(answer.status).toBe(400);
      expect(codesOf(answer)).toEqual(['BAD_REQUEST']);
    });

    it('treats null operationName, variables and extensions as absent', async () => {
      const answer = await post({ query: QUERY, operationName: null, variables: null, extensions: null });
      expect(answer.status).toBe(200);
      expect(answer.body.data).toBeDefined();
    });

    it('refuses a batched (array) body with 400 and executes none of it', async () => {
      const { headers, body, orders } = await buyer();
      const answer = await exchange(server.url, { headers: { ...headers, 'content-type': 'application/json' }, body: `[${body}]` });
      expect(answer.status).toBe(400);
      expect(codesOf(answer)).toEqual(['BAD_REQUEST']);
      expect(await orders()).toBe(0);
    });

    it('refuses a body over the size limit with 413 and a GraphQL error', async () => {
      const answer = await post({ query: QUERY, padding: 'x'.repeat(200 * 1024) });
      expect(answer.status).toBe(413);
      expect(codesOf(answer)).toEqual(['BAD_REQUEST']);
    });
  });

  describe('status codes', () => {
    const requestErrors: [string, Record<string, unknown>, string][] = [
      ['a syntax error', { query: '{' }, 'GRAPHQL_PARSE_FAILED'],
      ['a validation error', { query: '{ nope }' }, 'GRAPHQL_VALIDATION_FAILED'],
      ['an unknown operationName', { query: QUERY, operationName: 'Missing' }, 'OPERATION_RESOLUTION_FAILURE'],
      [
        'several operations and no operationName',
        { query: 'query A { __typename } query B { __typename }' },
        'OPERATION_RESOLUTION_FAILURE',
      ],
      [
        'a variable that fails coercion',
        { query: 'query ($first: Int!) { products(first: $first) { edges { cursor } } }', variables: { first: 'ten' } },
        'BAD_USER_INPUT',
      ],
    ];

    it.each(requestErrors)('answers %s with 400 and no data under application/graphql-response+json', async (_case, body, code) => {
      const answer = await post(body, { accept: 'application/graphql-response+json' });
      expect(answer.status).toBe(400);
      expect(answer.headers.get('content-type')).toBe(GRAPHQL_RESPONSE);
      expect(answer.body).not.toHaveProperty('data');
      expect(codesOf(answer)).toEqual([code]);
    });

    it.each(requestErrors)('answers %s with 200 and no data under application/json', async (_case, body, code) => {
      const withoutAndWithAccept: Record<string, string>[] = [{}, { accept: 'application/json' }];
      for (const headers of withoutAndWithAccept) {
        const answer = await post(body, headers);
        expect(answer.status).toBe(200);
        expect(answer.headers.get('content-type')).toBe(JSON_TYPE);
        expect(answer.body).not.toHaveProperty('data');
        expect(codesOf(answer)).toEqual([code]);
      }
    });

    it.each([
      ['application/json'],
      ['application/graphql-response+json'],
    ])('answers partial data with field errors with 200 in %s', async (accept) => {
      const answer = await post({ query: '{ product(id: "not-a-uuid") { id } products(first: 1) { edges { cursor } } }' }, { accept });
      expect(answer.status).toBe(200);
      expect(answer.body.data).toMatchObject({ product: null, products: { edges: [{ cursor: expect.any(String) }] } });
      expect(codesOf(answer)).toEqual(['BAD_USER_INPUT']);
    });

    it.each([
      ['application/json'],
      ['application/graphql-response+json'],
    ])('answers data: null from a field error with 200 in %s', async (accept) => {
      const answer = await post({ query: '{ orders { edges { cursor } } }' }, { accept });
      expect(answer.status).toBe(200);
      expect(answer.body).toHaveProperty('data', null);
      expect(codesOf(answer)).toEqual(['UNAUTHENTICATED']);
    });

    it.each([
      ['application/json'],
      ['application/graphql-response+json'],
    ])('answers a rejected bearer token with 401 in %s', async (accept) => {
      const answer = await post({ query: '{ viewer { id } }' }, { accept, authorization: 'Bearer not.a.token' });
      expect(answer.status).toBe(401);
      expect(answer.headers.get('www-authenticate')).toMatch(/^Bearer /);
      expect(codesOf(answer)).toEqual(['UNAUTHENTICATED']);
    });
  });

  describe('URL and methods', () => {
    it('serves queries and mutations by POST on the one URL', async () => {
      const { headers, body, orders } = await buyer();
      const placed = await exchange(server.url, { headers: { ...headers, 'content-type': 'application/json' }, body });
      expect(placed.status).toBe(200);
      expect(placed.body.errors).toBeUndefined();
      expect(await orders()).toBe(1);
    });

    it.each(['PUT', 'PATCH', 'DELETE'])('answers %s with 405 and Allow: GET, POST', async (method) => {
      const answer = await exchange(server.url, {
        method,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query: QUERY }),
      });
      expect(answer.status).toBe(405);
      expect(answer.headers.get('allow')).toBe('GET, POST');
      expect(codesOf(answer)).toEqual(['BAD_REQUEST']);
    });
  });
});

describe('GraphQL over HTTP with the explorer off', () => {
  let server: TestServer;

  beforeAll(async () => {
    server = await startTestServer({ env: { NODE_ENV: 'production', JWT_SECRET: 'production-secret-for-tests-0123456789abcd' } });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('refuses a GET that accepts only text/html with 406 instead of serving a page', async () => {
    const answer = await exchange(`${server.url}?${new URLSearchParams({ query: QUERY })}`, {
      method: 'GET',
      headers: { accept: 'text/html', ...PREFLIGHT },
    });
    expect(answer.status).toBe(406);
    expect(answer.text).not.toContain('embeddable-sandbox');
  });
});

describe('registerGraphQLOverHttp', () => {
  it('stops the server from starting when it is called after the /graphql route exists', async () => {
    const app = Fastify();
    app.post('/graphql', async () => ({}));
    registerGraphQLOverHttp(app, { landingPage: false });
    await expect(app.ready()).rejects.toThrow(/before the \/graphql route/);
    await app.close();
  });
});
