import { createHash } from 'node:crypto';
import { SignJWT } from 'jose';
import { countRows, withClient } from '../support/database';
import { codeOf } from '../support/responses';
import { type GraphQLResponse, startTestServer, type TestServer } from '../support/server';

const CREATE = `mutation Place($input: CreateOrderInput!, $key: IdempotencyKey) {
  createOrder(input: $input, idempotencyKey: $key) { order { id } }
}`;

const LIMIT = 3;

interface Created {
  createOrder: { order: { id: string } } | null;
}

function ordersOf(server: TestServer, user: string): Promise<number> {
  return countRows(server, 'SELECT count(*) FROM orders WHERE user_id = $1', [user]);
}

/** A well-formed HS256 token for `sub`, signed with a secret the server does not know. */
function forgedToken(sub: string): Promise<string> {
  return new SignJWT({ roles: [] })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode('not-the-server-secret-but-long-enough-0123456789'));
}

describe('mutation rate limit', () => {
  let server: TestServer;
  let productId: string;

  beforeAll(async () => {
    server = await startTestServer({
      env: { RATE_LIMIT_MUTATIONS_PER_MINUTE: String(LIMIT), IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' },
    });
    productId = await withClient(server.databaseUrl, async (client) => {
      const { rows } = await client.query<{ id: string }>('SELECT id FROM products ORDER BY sku LIMIT 1');
      return rows[0]!.id;
    });
  });
  afterAll(async () => {
    await server?.close();
  });

  function place(key: string, token?: string): Promise<GraphQLResponse<Created>> {
    return server.gql<Created>(CREATE, { input: { lines: [{ productId, quantity: 1 }] }, key }, { token, autoKey: false });
  }

  it('lets a user place 3 orders a minute and answers the 4th with 429 RATE_LIMITED without executing it', async () => {
    const user = 'limited-user';
    const token = await server.token(user);
    for (let index = 0; index < LIMIT; index++) {
      const response = await place(`allowed-${index}`, token);
      expect(response.status).toBe(200);
      expect(response.body.errors).toBeUndefined();
    }

    const refused = await place('refused', token);
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(refused.body.data ?? null).toBeNull();
    expect(codeOf(refused)).toBe('RATE_LIMITED');
    expect(refused.body.errors?.[0]?.extensions?.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(refused.body.errors?.[0]?.message).toMatch(/rate limit/i);
    // A GraphQL response holds data, errors and extensions only.
    expect(Object.keys(refused.body).filter((key) => !['data', 'errors', 'extensions'].includes(key))).toEqual([]);
    expect(await ordersOf(server, user)).toBe(LIMIT);
    expect(await countRows(server, 'SELECT count(*) FROM idempotency_records WHERE user_id = $1 AND key = $2', [user, 'refused'])).toBe(0);
  });

  it('keeps answering the queries of a user who has used up the mutation budget', async () => {
    const user = 'limited-reader';
    const token = await server.token(user);
    for (let index = 0; index < LIMIT; index++) await place(`reader-${index}`, token);
    expect(codeOf(await place('reader-over', token))).toBe('RATE_LIMITED');

    for (let index = 0; index < LIMIT + 3; index++) {
      const response = await server.gql<{ orders: { edges: unknown[] } }>('{ orders { edges { node { id } } } }', undefined, { token });
      expect(response.status).toBe(200);
      expect(response.body.errors).toBeUndefined();
      expect(response.body.data?.orders.edges).toHaveLength(LIMIT);
    }
  });

  it('keeps a separate budget for each user', async () => {
    const first = await server.token('budget-first');
    const second = await server.token('budget-second');
    for (let index = 0; index < LIMIT; index++) await place(`first-${index}`, first);
    expect(codeOf(await place('first-over', first))).toBe('RATE_LIMITED');

    const other = await place('second-0', second);
    expect(other.status).toBe(200);
    expect(other.body.errors).toBeUndefined();
    expect(await ordersOf(server, 'budget-second')).toBe(1);
  });

  it('answers anonymous mutations UNAUTHENTICATED until the address budget is used up, then RATE_LIMITED', async () => {
    const ordersBefore = await countRows(server, 'SELECT count(*) FROM orders');
    const answers: GraphQLResponse<Created>[] = [];
    for (let index = 0; index < LIMIT + 1; index++) answers.push(await place(`anonymous-${index}`));

    for (const response of answers.slice(0, LIMIT)) {
      expect(response.status).toBeLessThan(500);
      expect(codeOf(response)).toBe('UNAUTHENTICATED');
    }
    expect(codeOf(answers[LIMIT]!)).toBe('RATE_LIMITED');
    expect(await countRows(server, 'SELECT count(*) FROM orders')).toBe(ordersBefore);
  });

  it("does not charge a forged token's mutations to the user named in its sub", async () => {
    const victim = 'forgery-victim';
    const forged = await forgedToken(victim);
    for (let index = 0; index < LIMIT + 2; index++) {
      const response = await place(`forged-${index}`, forged);
      expect(['UNAUTHENTICATED', 'RATE_LIMITED']).toContain(codeOf(response));
    }
    expect(await ordersOf(server, victim)).toBe(0);

    const token = await server.token(victim);
    for (let index = 0; index < LIMIT; index++) {
      const response = await place(`victim-${index}`, token);
      expect(response.status).toBe(200);
      expect(response.body.errors).toBeUndefined();
    }
    expect(await ordersOf(server, victim)).toBe(LIMIT);
  });

  it('cannot be bypassed with automatic persisted queries, which carry no query text', async () => {
    const user = 'persisted-user';
    const token = await server.token(user);
    const sha256Hash = createHash('sha256').update(CREATE).digest('hex');
    const send = (key: string, withQuery: boolean) =>
      fetch(server.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({
          ...(withQuery ? { query: CREATE } : {}),
          variables: { input: { lines: [{ productId, quantity: 1 }] }, key },
          extensions: { persistedQuery: { version: 1, sha256Hash } },
        }),
      });

    const registered = await send('persisted-0', true);
    expect(registered.status).toBe(200);
    const codes: unknown[] = [];
    for (let index = 1; index <= LIMIT + 1; index++) {
      const response = await send(`persisted-${index}`, false);
      const body = (await response.json()) as GraphQLResponse['body'];
      codes.push(body.errors?.[0]?.extensions?.code ?? 'placed');
    }
    // Persisted queries are off: a hash-only request executes nothing, so nothing is uncounted.
    expect(await ordersOf(server, user)).toBeLessThanOrEqual(1);
    expect(codes.every((code) => code === 'PERSISTED_QUERY_NOT_SUPPORTED' || code === 'RATE_LIMITED')).toBe(true);
  });
});
