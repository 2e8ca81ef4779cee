import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Client } from 'pg';
import pino from 'pino';
import { buildApp } from '../../src/http/app';
import { withClient } from '../support/database';
import { type GraphQLResponse, startTestServer, type TestServer } from '../support/server';

const CREATE = `mutation PlaceOrder($input: CreateOrderInput!, $key: IdempotencyKey) {
  createOrder(input: $input, idempotencyKey: $key) { order { id note } }
}`;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Created {
  createOrder: { order: { id: string; note: string | null } } | null;
}

interface LogLine {
  readonly msg?: string;
  readonly requestId?: string;
  readonly reqId?: string;
  readonly [field: string]: unknown;
}

/**
 * The request id a line was logged under. Lines are matched under Fastify's default label too, so
 * that a wrong label fails only the test about the label.
 */
function requestIdOf(line: LogLine): string | undefined {
  return line.requestId ?? line.reqId;
}

describe('request logging', () => {
  let server: TestServer;
  let app: FastifyInstance;
  let url: string;
  let productId: string;
  const raw: string[] = [];

  beforeAll(async () => {
    server = await startTestServer({ env: { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
    const logger = pino({ level: 'info' }, { write: (line: string) => void raw.push(line) });
    app = await buildApp({ config: server.config, orm: server.orm, logger });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/graphql`;
    productId = await withClient(server.databaseUrl, async (client) => {
      const { rows } = await client.query<{ id: string }>('SELECT id FROM products ORDER BY sku LIMIT 1');
      return rows[0]!.id;
    });
  });
  afterAll(async () => {
    await app?.close();
    await server?.close();
  });

  function lines(): LogLine[] {
    return raw.map((line) => JSON.parse(line) as LogLine);
  }

  async function post<T>(body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<GraphQLResponse<T>> {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
    return { status: response.status, headers: response.headers, body: (await response.json()) as GraphQLResponse<T>['body'] };
  }

  /** The request's log lines, once Fastify has logged its completion (written after the response). */
  async function linesOf(requestId: string): Promise<LogLine[]> {
    const deadline = Date.now() + 5_000;
    for (;;) {
      const mine = lines().filter((line) => requestIdOf(line) === requestId);
      if (mine.some((line) => line.msg === 'request completed') || Date.now() > deadline) return mine;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async function graphqlLineOf(requestId: string): Promise<LogLine> {
    const line = (await linesOf(requestId)).find((candidate) => candidate.msg === 'graphql request');
    if (!line) throw new Error(`no 'graphql request' log line for request ${requestId}:\n${raw.join('')}`);
    return line;
  }

  it("echoes the client's X-Request-Id and logs every line of the request under it", async () => {
    const requestId = `checkout-${randomUUID()}.attempt:2`;
    const response = await post({ query: '{ products(first: 1) { edges { node { id } } } }' }, { 'x-request-id': requestId });
    expect(response.headers.get('x-request-id')).toBe(requestId);

    const mine = await linesOf(requestId);
    expect(mine.map((line) => line.msg)).toEqual(expect.arrayContaining(['incoming request', 'graphql request', 'request completed']));
    for (const line of mine) expect(line).toMatchObject({ requestId });
  });

  it.each([
    ['missing', undefined],
    ['containing spaces and markup', 'abc <script>alert(1)</script>'],
    ['longer than 128 characters', 'a'.repeat(129)],
  ])('replaces a %s X-Request-Id with a generated UUID, echoed and logged', async (_case, incoming) => {
    const response = await post({ query: '{ __typename }' }, incoming === undefined ? {} : { 'x-request-id': incoming });
    const requestId = response.headers.get('x-request-id') ?? '';
    expect(requestId).toMatch(UUID);
    expect((await linesOf(requestId)).map((line) => line.msg)).toContain('graphql request');
    if (incoming !== undefined) expect(raw.join('')).not.toContain(incoming);
  });

  it('logs user, operation, idempotency key and replay, error codes and duration for each GraphQL request', async () => {
    const token = await server.token('logged-user');
    const key = `log-${randomUUID()}`;
    const send = (requestId: string, lineProductId = productId, lineKey = key) =>
      post<Created>(
        {
          query: CREATE,
          operationName: 'PlaceOrder',
          variables: { input: { lines: [{ productId: lineProductId, quantity: 1 }] }, key: lineKey },
        },
        { authorization: `Bearer ${token}`, 'x-request-id': requestId },
      );

    const firstId = `first-${randomUUID()}`;
    expect((await send(firstId)).body.errors).toBeUndefined();
    const first = await graphqlLineOf(firstId);
    expect(first).toMatchObject({ userId: 'logged-user', operationName: 'PlaceOrder', idempotency: [{ key, replayed: false }] });
    expect(first.errorCodes ?? []).toEqual([]);
    expect(typeof first.durationMs).toBe('number');
    expect(first.durationMs).toBeGreaterThanOrEqual(0);
    expect(first.level).toBe(30);

    const replayId = `replay-${randomUUID()}`;
    expect((await send(replayId)).headers.get('idempotent-replayed')).toBe('true');
    expect(await graphqlLineOf(replayId)).toMatchObject({ userId: 'logged-user', idempotency: [{ key, replayed: true }] });

    const failedId = `failed-${randomUUID()}`;
    const failedKey = `log-failed-${randomUUID()}`;
    expect((await send(failedId, randomUUID(), failedKey)).body.errors?.[0]?.extensions?.code).toBe('PRODUCT_NOT_FOUND');
    expect(await graphqlLineOf(failedId)).toMatchObject({
      userId: 'logged-user',
      operationName: 'PlaceOrder',
      idempotency: [{ key: failedKey, replayed: false }],
      errorCodes: ['PRODUCT_NOT_FOUND'],
    });

    const anonymousId = `anonymous-${randomUUID()}`;
    await post({ query: '{ orders { edges { node { id } } } }' }, { 'x-request-id': anonymousId });
    const anonymous = await graphqlLineOf(anonymousId);
    expect(anonymous.userId).toBeUndefined();
    expect(anonymous.errorCodes).toEqual(['UNAUTHENTICATED']);
  });

  it('never logs the bearer token, the Authorization header or the stored payload', async () => {
    const token = await server.token('secretive-user');
    const forged = `${token.slice(0, -4)}AAAA`;
    const note = `gift wrap for ${randomUUID()}`;
    const key = `secret-${randomUUID()}`;
    const headers = { authorization: `Bearer ${token}` };
    const variables = { input: { lines: [{ productId, quantity: 1 }], note }, key };
    const requestIds: string[] = [];
    const tracked = async <T>(body: Record<string, unknown>, extra: Record<string, string>) => {
      const requestId = `secret-${randomUUID()}`;
      requestIds.push(requestId);
      return post<T>(body, { ...extra, 'x-request-id': requestId });
    };

    const placed = await tracked<Created>({ query: CREATE, variables }, headers);
    const orderId = placed.body.data?.createOrder?.order.id;
    expect(orderId).toMatch(UUID);
    expect(placed.body.data?.createOrder?.order.note).toBe(note);
    expect((await tracked<Created>({ query: CREATE, variables }, headers)).body.data?.createOrder?.order.id).toBe(orderId);
    const read = await tracked<{ order: { note: string } | null }>(
      { query: 'query Read($id: ID!) { order(id: $id) { id note } }', variables: { id: orderId } },
      headers,
    );
    expect(read.body.data?.order?.note).toBe(note);
    const reused = await tracked({ query: CREATE, variables: { ...variables, input: { ...variables.input, note: `${note}!` } } }, headers);
    expect(reused.body.errors?.[0]?.extensions?.code).toBe('IDEMPOTENCY_KEY_REUSED');
    const rejected = await tracked({ query: CREATE, variables }, { authorization: `Bearer ${forged}` });
    expect(rejected.body.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    for (const requestId of requestIds) expect((await linesOf(requestId)).length).toBeGreaterThan(0);

    const captured = raw.join('');
    expect(captured).toContain(key);
    for (const secret of [token, forged, `Bearer ${token}`, `Bearer ${forged}`, note, orderId as string]) {
      expect(captured).not.toContain(secret);
    }
  });

  it('does not log the variables of a query sent with GET', async () => {
    const token = await server.token('get-user');
    const placed = await post<Created>(
      { query: CREATE, variables: { input: { lines: [{ productId, quantity: 1 }] }, key: `get-${randomUUID()}` } },
      { authorization: `Bearer ${token}` },
    );
    const orderId = placed.body.data?.createOrder?.order.id as string;
    expect(orderId).toMatch(UUID);

    const requestId = `get-${randomUUID()}`;
    const search = new URLSearchParams({
      query: 'query Read($id: ID!) { order(id: $id) { id } }',
      variables: JSON.stringify({ id: orderId }),
    });
    const response = await fetch(`${url}?${search}`, {
      headers: {
        accept: 'application/json',
        'apollo-require-preflight': 'true',
        authorization: `Bearer ${token}`,
        'x-request-id': requestId,
      },
    });
    expect(((await response.json()) as GraphQLResponse<{ order: { id: string } }>['body']).data?.order.id).toBe(orderId);
    expect((await linesOf(requestId)).length).toBeGreaterThan(0);
    expect(raw.join('')).not.toContain(orderId);
  });
});

describe('logging of database failures', () => {
  let server: TestServer;
  let app: FastifyInstance;
  let url: string;
  const raw: string[] = [];
  const user = 'timeout-logged-user';
  const key = `held-${randomUUID()}`;
  const note = `deliver to ${randomUUID()}`;
  const requestId = `held-record-${randomUUID()}`;
  let response: GraphQLResponse<Created>['body'];

  beforeAll(async () => {
    server = await startTestServer({
      env: { STATEMENT_TIMEOUT_MS: '300', IDEMPOTENCY_WAIT_MS: '5000', IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' },
    });
    const logger = pino({ level: 'info' }, { write: (line: string) => void raw.push(line) });
    app = await buildApp({ config: server.config, orm: server.orm, logger });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/graphql`;
    response = await placeWhileTheRecordIsHeld();
  });
  afterAll(async () => {
    await app?.close();
    await server?.close();
  });

  /**
   * Another process's uncommitted record for the same key makes the server's record insert wait
   * until the statement timeout cancels it, after the order itself was written in the transaction.
   */
  async function placeWhileTheRecordIsHeld(): Promise<GraphQLResponse<Created>['body']> {
    const productId = await withClient(server.databaseUrl, async (client) => {
      const { rows } = await client.query<{ id: string }>('SELECT id FROM products ORDER BY sku LIMIT 1');
      return rows[0]!.id;
    });
    const holder = new Client({ connectionString: server.databaseUrl });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(
        `INSERT INTO idempotency_records (user_id, key, operation, fingerprint, outcome, result, created_at, expires_at)
         VALUES ($1, $2, 'createOrder', decode(repeat('00', 32), 'hex'), 'SUCCEEDED', '{}', now(), now() + interval '1 day')`,
        [user, key],
      );
      const answer = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${await server.token(user)}`, 'x-request-id': requestId },
        body: JSON.stringify({ query: CREATE, variables: { input: { lines: [{ productId, quantity: 1 }], note }, key } }),
      });
      return (await answer.json()) as GraphQLResponse<Created>['body'];
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
  }

  function failureLines(): LogLine[] {
    return raw.map((line) => JSON.parse(line) as LogLine).filter((line) => line.msg === 'database unavailable');
  }

  it('answers SERVICE_UNAVAILABLE and logs the failure', () => {
    expect(response.errors?.[0]?.extensions?.code).toBe('SERVICE_UNAVAILABLE');
    expect(JSON.stringify(response)).not.toContain(note);
    expect(failureLines()).toHaveLength(1);
  });

  it('logs the failure without the payload the record write carried', () => {
    expect(raw.join('')).not.toContain(note);
  });

  it("logs the failure under the request's id", () => {
    expect(failureLines().map(requestIdOf)).toEqual([requestId]);
  });
});
