import { randomUUID } from 'node:crypto';
import { connect, type NatsConnection } from 'nats';
import { Client } from 'pg';
import { signToken } from '../../src/auth/token';
import { eventId } from '../../src/events';
import { OrderEvent } from '../../src/orders/order.events';
import { createTestDatabase, dropTestDatabase, withClient } from '../support/database';
import { postGraphQL, SPAWNED_JWT_SECRET, serverEnv, signalServer, startServer, stopAllServers } from '../support/processes';
import { startTestServer, type TestServer } from '../support/server';
import { type NatsServer, startNatsServer, streamMessages } from './support/nats';
import { startPauseProxy } from './support/pause-proxy';
import { killAllRelays, spawnRelay } from './support/relay-process';

const PLACE = `mutation Place($input: CreateOrderInput!) { createOrder(input: $input) { order { id } } }`;

jest.setTimeout(120_000);

describe('the JetStream relay', () => {
  let server: TestServer;
  let nats: NatsServer;
  let nc: NatsConnection;
  let alice: string;
  let productId: string;

  beforeEach(async () => {
    [server, nats] = await Promise.all([startTestServer(), startNatsServer()]);
    nc = await connect({ servers: nats.url });
    alice = await server.token('alice');
    const [row] = await sql<{ id: string }>(`select id from products where currency = 'USD' order by stock desc limit 1`);
    productId = row!.id;
  });

  afterEach(async () => {
    await killAllRelays();
    await nc?.close();
    await nats?.stop();
    await server?.close();
  });

  async function sql<T>(text: string, params: unknown[] = []): Promise<T[]> {
    return withClient(server.databaseUrl, async (client) => (await client.query(text, params)).rows as T[]);
  }

  async function placeOrders(count: number): Promise<string[]> {
    const responses = await Promise.all(
      Array.from({ length: count }, () =>
        server.gql<{ createOrder: { order: { id: string } } }>(PLACE, { input: { lines: [{ productId, quantity: 1 }] } }, { token: alice }),
      ),
    );
    return responses.map((response) => response.body.data!.createOrder.order.id);
  }

  /** Polls a condition observed in PostgreSQL or NATS until it holds. */
  async function until(condition: () => Promise<boolean>): Promise<void> {
    while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 20));
  }

  const unpublished = async () =>
    Number((await sql<{ n: string }>('select count(*) as n from outbox_events where published_at is null'))[0]!.n);
  const streamExists = async () =>
    (await nc.jetstreamManager()).streams.info('EVENTS').then(
      () => true,
      () => false,
    );

  /** A consumer with an inbox: each event id takes effect once; returns the orders it saw placed. */
  async function consumeWithInbox(): Promise<{ orders: string[]; deliveries: number }> {
    const inbox = new Set<string>();
    const orders: string[] = [];
    const messages = await streamMessages(nc);
    for (const message of messages) {
      expect(message.msgId).toBe(message.body.id);
      expect(message.subject).toBe(`events.${message.body.type}`);
      if (inbox.has(message.body.id)) continue;
      inbox.add(message.body.id);
      if (message.body.type === 'OrderPlaced') orders.push(message.body.data.orderId as string);
    }
    return { orders, deliveries: messages.length };
  }

  async function expectEachOrderOnce(orderIds: string[]): Promise<void> {
    const { orders, deliveries } = await consumeWithInbox();
    expect(orders.sort()).toEqual([...orderIds].sort());
    // JetStream stored each event once: no republish got past the duplicate window.
    expect(deliveries).toBe(orderIds.length);
  }

  it('publishes every event once to events.<Type> with Nats-Msg-Id = event id, and marks it published', async () => {
    const orderIds = await placeOrders(5);
    spawnRelay(server.databaseUrl, nats.url);
    await until(async () => (await unpublished()) === 0);
    const messages = await streamMessages(nc);
    expect(messages.map((message) => message.msgId).sort()).toEqual(orderIds.map((id) => eventId(OrderEvent.OrderPlaced, id)).sort());
    await expectEachOrderOnce(orderIds);
  });

  it('publishes nothing twice when killed after reading a batch, before JetStream received it', async () => {
    const proxy = await startPauseProxy(Number(new URL(nats.url).port));
    try {
      const relay = spawnRelay(server.databaseUrl, `nats://127.0.0.1:${proxy.port}`);
      await until(streamExists);
      proxy.hold();
      const orderIds = await placeOrders(5);
      // The relay read and locked the batch; its publishes are held back by the proxy.
      await until(async () => {
        const rows = await sql(
          `select 1 from pg_stat_activity where datname = current_database() and state = 'idle in transaction' and query ilike '%for update skip locked%'`,
        );
        return rows.length > 0 && proxy.heldBytes() > 0;
      });
      await relay.kill();
      expect((await nc.jetstreamManager().then((jsm) => jsm.streams.info('EVENTS'))).state.messages).toBe(0);

      spawnRelay(server.databaseUrl, nats.url);
      await until(async () => (await unpublished()) === 0);
      await expectEachOrderOnce(orderIds);
    } finally {
      await proxy.close();
    }
  });

  it('publishes nothing twice when killed after JetStream acknowledged a batch, before marking it', async () => {
    const orderIds = await placeOrders(5);
    const blocker = new Client({ connectionString: server.databaseUrl });
    await blocker.connect();
    try {
      // SHARE mode lets the relay lock rows (FOR UPDATE) but stops its UPDATE that marks them.
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE outbox_events IN SHARE MODE');
      const relay = spawnRelay(server.databaseUrl, nats.url);
      await until(async () => {
        const waiting = await sql(
          `select 1 from pg_locks l join pg_class c on c.oid = l.relation where c.relname = 'outbox_events' and not l.granted`,
        );
        return (
          waiting.length > 0 &&
          (await streamExists()) &&
          (await nc.jetstreamManager().then((jsm) => jsm.streams.info('EVENTS'))).state.messages === 5
        );
      });
      await relay.kill();
      await blocker.query('ROLLBACK');
      expect(await unpublished()).toBe(5);

      spawnRelay(server.databaseUrl, nats.url);
      await until(async () => (await unpublished()) === 0);
      await expectEachOrderOnce(orderIds);
    } finally {
      await blocker.end();
    }
  });

  it('republishes nothing when killed after marking a batch', async () => {
    const first = await placeOrders(5);
    const relay = spawnRelay(server.databaseUrl, nats.url);
    await until(async () => (await unpublished()) === 0);
    const marked = await sql<{ id: string; published_at: Date }>('select id, published_at from outbox_events order by seq');
    await relay.kill();

    spawnRelay(server.databaseUrl, nats.url);
    const second = await placeOrders(2);
    await until(async () => (await unpublished()) === 0);
    const again = await sql<{ id: string; published_at: Date }>('select id, published_at from outbox_events order by seq limit 5');
    expect(again).toEqual(marked);
    await expectEachOrderOnce([...first, ...second]);
  });

  it('shares the outbox between two relays running at once without publishing an event twice', async () => {
    const env = { EVENTS_RELAY_BATCH: '3' };
    spawnRelay(server.databaseUrl, nats.url, env);
    spawnRelay(server.databaseUrl, nats.url, env);
    const orderIds = (await Promise.all(Array.from({ length: 4 }, () => placeOrders(10)))).flat();
    await until(async () => (await unpublished()) === 0);
    await expectEachOrderOnce(orderIds);
  });

  it('leaves a failed order without any event, even with a relay running', async () => {
    spawnRelay(server.databaseUrl, nats.url);
    const failed = await server.gql(PLACE, { input: { lines: [{ productId: randomUUID(), quantity: 1 }] } }, { token: alice });
    expect(failed.body.errors?.[0]?.extensions?.code).toBe('PRODUCT_NOT_FOUND');
    const orderIds = await placeOrders(1);
    await until(async () => (await unpublished()) === 0 && (await streamExists()));
    await expectEachOrderOnce(orderIds);
  });
});

describe('the relay inside the server', () => {
  let databaseUrl: string;
  let nats: NatsServer;

  beforeAll(async () => {
    [databaseUrl, nats] = await Promise.all([createTestDatabase(), startNatsServer()]);
  });

  afterAll(async () => {
    await stopAllServers();
    await nats?.stop();
    await dropTestDatabase(databaseUrl);
  });

  it('starts with NATS_URL, publishes what the server writes and reports it in /metrics', async () => {
    const server = await startServer(serverEnv(databaseUrl, { NATS_URL: nats.url, EVENTS_RELAY_POLL_MS: '20' }));
    const token = await signToken({ id: 'relayed', roles: [] }, SPAWNED_JWT_SECRET, '1h');
    const [product] = await withClient(
      databaseUrl,
      async (client) => (await client.query<{ id: string }>('select id from products order by sku limit 1')).rows,
    );
    const placed = await postGraphQL<{ createOrder: { order: { id: string } } }>(
      server.url,
      PLACE,
      { input: { lines: [{ productId: product!.id, quantity: 1 }] } },
      { authorization: `Bearer ${token}`, 'idempotency-key': randomUUID() },
    );
    expect(placed.body.errors).toBeUndefined();
    const metricsUrl = server.url.replace(/\/graphql$/, '/metrics');
    for (;;) {
      const text = await (await fetch(metricsUrl)).text();
      if (/^events_relay_published_total [1-9]/m.test(text)) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const nc = await connect({ servers: nats.url });
    try {
      const messages = await streamMessages(nc);
      expect(messages.map((message) => message.body.data.orderId)).toEqual([placed.body.data!.createOrder.order.id]);
    } finally {
      await nc.close();
    }
    expect(await signalServer(server, 'SIGTERM')).toEqual({ code: 0, signal: null });
  });
});
