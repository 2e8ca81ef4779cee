import { Client } from 'pg';
import { startTestServer, type TestServer } from '../support/server';

const CREATE = `mutation($input: CreateOrderInput!, $key: IdempotencyKey) {
  createOrder(input: $input, idempotencyKey: $key) { order { id lines { product { name } } } }
}`;

const ENGINE = /idempotency_records/;

/**
 * The engine's cost in statements and messages, as documented on IdempotencyHandler: a replay
 * is one primary-key read; a first execution adds that read and the record insert to the
 * mutation's own statements, sent in the messages of its BEGIN and COMMIT.
 */
describe('statements sent per idempotency path', () => {
  let server: TestServer;
  let cached: TestServer;
  let input: { lines: { productId: string; quantity: number }[] };
  let token: string;

  beforeAll(async () => {
    server = await startTestServer({ cacheSize: 0, env: { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
    cached = await startTestServer({ databaseUrl: server.databaseUrl, env: { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
    const products = await server.gql<{ products: { edges: { node: { id: string } }[] } }>(
      '{ products(first: 1) { edges { node { id } } } }',
    );
    input = { lines: [{ productId: products.body.data?.products.edges[0]?.node.id as string, quantity: 1 }] };
    token = await server.token('counter');
  });
  afterAll(async () => {
    await cached.close();
    await server.close();
  });

  async function statementsOf(target: TestServer, variables: Record<string, unknown>): Promise<string[]> {
    target.resetStatements();
    const response = await target.gql(CREATE, variables, { token, autoKey: false });
    expect(response.status).toBe(200);
    return [...target.statements];
  }

  it('adds one read and one insert of the record to a first execution', async () => {
    const statements = await statementsOf(server, { input, key: 'first-path' });
    const engine = statements.filter((sql) => ENGINE.test(sql));
    expect(engine).toHaveLength(2);
    expect(engine[0]).toMatch(/^select /);
    expect(engine[1]).toMatch(/^insert into idempotency_records/);
    // The record insert is the last statement: it rides with the mutation's own COMMIT.
    expect(statements.at(-1)).toBe(engine[1]);
    // The mutation's own: products locked, order and lines inserted, stock updated, OrderPlaced appended.
    expect(statements.filter((sql) => !ENGINE.test(sql))).toHaveLength(5);
  });

  /** The texts pg sends to the server while `work` runs, one entry per message. */
  async function messagesOf(work: () => Promise<unknown>): Promise<string[]> {
    const messages: string[] = [];
    const original = Client.prototype.query;
    const spy = jest.spyOn(Client.prototype, 'query').mockImplementation(function (this: Client, ...args: unknown[]) {
      const [first] = args as [string | { text: string }];
      messages.push(typeof first === 'string' ? first : first.text);
      return (original as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof original);
    try {
      await work();
    } finally {
      spy.mockRestore();
    }
    return messages;
  }

  it('sends the read with the BEGIN and the record insert with the COMMIT: no round trip of their own', async () => {
    const messages = await messagesOf(() => statementsOf(server, { input, key: 'one-message-path' }));
    const engine = messages.filter((text) => ENGINE.test(text));
    expect(engine).toHaveLength(2);
    expect(engine[0]).toMatch(/^BEGIN;\nselect .* from idempotency_records/s);
    expect(engine[1]).toMatch(/^insert into idempotency_records .*;\nCOMMIT$/s);
    expect(messages[0]).toBe(engine[0]);
    expect(messages.at(-1)).toBe(engine[1]);
    expect(messages.filter((text) => /^(begin|commit)/i.test(text))).toEqual([engine[0]]);
    // The mutation's own statements: the products locked, the order and its lines inserted, the stock updated,
    // its OrderPlaced event appended.
    expect(messages).toHaveLength(7);
  });

  it('replays with exactly one read and no write, in a transaction rolled back', async () => {
    await statementsOf(server, { input, key: 'replay-path' });
    let statements: string[] = [];
    const messages = await messagesOf(async () => {
      statements = await statementsOf(server, { input, key: 'replay-path' });
    });
    expect(statements).toHaveLength(1);
    expect(statements[0]).toMatch(/^select .* from idempotency_records/s);
    expect(messages).toHaveLength(2);
    expect(messages[0]).toBe(`BEGIN;\n${statements[0]}`);
    expect(messages[1]).toMatch(/^rollback$/i);
  });

  it('replays from the in-memory cache without any statement once a process has seen the record', async () => {
    await statementsOf(cached, { input, key: 'cached-path' });
    const statements = await statementsOf(cached, { input, key: 'cached-path' });
    expect(statements).toEqual([]);
  });

  it('rejects a reused key with one read', async () => {
    await statementsOf(server, { input, key: 'reused-path' });
    const statements = await statementsOf(server, { input: { lines: [{ ...input.lines[0], quantity: 2 }] }, key: 'reused-path' });
    expect(statements).toHaveLength(1);
  });

  it('stores a domain failure with one read and one insert besides the failed mutation', async () => {
    const statements = await statementsOf(server, { input: { lines: [{ ...input.lines[0], quantity: 1000 }] }, key: 'failure-path' });
    expect(statements.filter((sql) => ENGINE.test(sql))).toHaveLength(2);
    expect(statements.at(-1)).toMatch(/^insert into idempotency_records/);
  });
});
