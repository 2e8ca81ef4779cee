import { Client } from 'pg';
import { startTestServer, type TestServer } from '../support/server';

const CREATE = `mutation($input: CreateOrderInput!, $key: IdempotencyKey) {
  createOrder(input: $input, idempotencyKey: $key) { order { id lines { product { name } } } }
}`;

const ENGINE = /idempotency_records/;

/**
 * The engine's cost in statements and messages: a replay is one primary-key read in no
 * transaction; a first execution adds that read, the transaction's lock_timeout and the record
 * write to the mutation's own statements.
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

  it('adds one read, the transaction lock bound and one record write to a first execution', async () => {
    const statements = await statementsOf(server, { input, key: 'first-path' });
    const engine = statements.filter((sql) => ENGINE.test(sql));
    expect(engine).toHaveLength(2);
    expect(engine[0]).toMatch(/^select /);
    expect(engine[1]).toMatch(/^insert into idempotency_records/);
    expect(statements[1]).toMatch(/^select set_config\('lock_timeout', \?, true\)/);
    // The record is written last, in the mutation's transaction.
    expect(statements.at(-1)).toBe(engine[1]);
    // The mutation's own: products locked and their stock taken in one statement, then the order,
    // its OrderPlaced event and its lines in one (once four: the lines and the event had their own).
    const own = statements.filter((sql) => !ENGINE.test(sql) && !/set_config/.test(sql));
    expect(own).toHaveLength(2);
    expect(own[1]).toMatch(
      /^with write_1 as \(insert into outbox_events .*\), write_2 as \(insert into orders .*\) insert into order_lines /s,
    );
  });

  it('runs the mutation and its record in one transaction whose first statement bounds its lock waits', async () => {
    const messages = await messagesOf(() => statementsOf(server, { input, key: 'one-transaction-path' }));
    expect(messages[0]).toMatch(/^select .* from idempotency_records/s);
    expect(messages[1]).toMatch(/^begin/i);
    expect(messages[2]).toMatch(/set_config\('lock_timeout'/);
    expect(messages.at(-2)).toMatch(/^insert into idempotency_records/);
    expect(messages.at(-1)).toMatch(/^commit/i);
    expect(messages.filter((text) => /^(begin|commit|rollback)/i.test(text))).toHaveLength(2);
  });

  it('replays with exactly one read, in no transaction', async () => {
    await statementsOf(server, { input, key: 'replay-path' });
    const messages = await messagesOf(() => statementsOf(server, { input, key: 'replay-path' }));
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatch(/^select .* from idempotency_records .*where user_id = .* and key = /s);
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

  it('stores a domain failure in a transaction of its own after the failed mutation rolled back', async () => {
    const messages = await messagesOf(() =>
      statementsOf(server, { input: { lines: [{ ...input.lines[0], quantity: 1000 }] }, key: 'failure-path' }),
    );
    const ends = messages.filter((text) => /^(commit|rollback)/i.test(text)).map((text) => text.toLowerCase().replace(/;$/, ''));
    expect(ends).toEqual(['rollback', 'commit']);
    expect(messages.at(-2)).toMatch(/^insert into idempotency_records/);
  });
});
