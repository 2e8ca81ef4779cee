import { randomUUID } from 'node:crypto';
import { startTestServer, type TestServer } from '../support/server';

/**
 * Requests whose operationName selects no operation are the client's mistake: a 400-class
 * GraphQL error, also for an authenticated caller. And replays are answered only after
 * authorization: there is no response cache in front of the permission rules.
 */
describe('operation selection and replays behind authorization', () => {
  let server: TestServer;
  let token: string;

  beforeAll(async () => {
    server = await startTestServer({ env: { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
    token = await server.token('selector');
  });
  afterAll(async () => {
    await server.close();
  });

  async function post(body: Record<string, unknown>, accept: string) {
    const response = await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept, authorization: `Bearer ${token}`, 'idempotency-key': randomUUID() },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: (await response.json()) as { errors?: { message: string; extensions?: { code?: string } }[] } };
  }

  it.each([
    ['an unknown operationName', { query: 'query A { viewer { id } }', operationName: 'Nope' }],
    ['an empty operationName', { query: 'query A { viewer { id } }', operationName: '' }],
    ['several anonymous operations', { query: '{ viewer { id } } { products(first: 1) { totalCount } }' }],
    ['several operations and no operationName', { query: 'query A { viewer { id } } mutation B { __typename }' }],
  ])('answers %s with a request error: 400, or 200 for a legacy application/json client', async (_case, body) => {
    // docs/graphql-over-http.md: request errors are 400 with application/graphql-response+json, 200 with application/json.
    for (const [accept, status] of [
      ['application/graphql-response+json', 400],
      ['application/json', 200],
    ] as const) {
      const response = await post(body, accept);
      expect({ accept, status: response.status }).toEqual({ accept, status });
      // Several anonymous operations already fail validation (LoneAnonymousOperation).
      expect(response.body.errors?.[0]?.extensions?.code).toMatch(/^(OPERATION_RESOLUTION_FAILURE|GRAPHQL_VALIDATION_FAILED)$/);
    }
  });

  it('checks permissions before replaying: a caller who lost a permission gets FORBIDDEN, not the stored answer', async () => {
    const admin = await server.token('catalog-keeper', { admin: true });
    const key = randomUUID();
    const sku = `SEL-${key.slice(0, 8)}`;
    const create = (bearer: string) =>
      server.gql<{ createProduct: { product: { id: string } } }>(
        'mutation($input: CreateProductInput!, $key: IdempotencyKey) { createProduct(input: $input, idempotencyKey: $key) { product { id } } }',
        { input: { sku, name: 'Selector', priceCents: 100, currency: 'USD', stock: 1 }, key },
        { token: bearer, autoKey: false },
      );
    const first = await create(admin);
    expect(first.body.errors).toBeUndefined();
    expect((await create(admin)).headers.get('idempotent-replayed')).toBe('true');
    const demoted = await server.token('catalog-keeper');
    const refused = await create(demoted);
    expect(refused.body.errors?.[0]?.extensions?.code).toBe('FORBIDDEN');
    expect(refused.headers.get('idempotent-replayed')).toBeNull();
  });
});
