import { createTestDatabase, dropTestDatabase } from '../support/database';
import { createOrder, ledger, markerOf, orderIdOf, productId } from '../support/orders-client';
import { type ServerProcess, serverEnv, startServer, stopAllServers, tokenFor } from '../support/processes';
import { codeOf } from '../support/responses';
import { type FaultProxy, startFaultProxy } from './fault-proxy';

// The database connection dies at the exact points an outage can hit a mutation: as its
// transaction begins, before its COMMIT arrives, and after the COMMIT ran but before the answer
// came back. The client must get the retryable SERVICE_UNAVAILABLE every time (I9), and a
// retry with the key must execute exactly once, or replay the order that did commit (I4, I5).

/** The message that commits: a COMMIT of its own, or the idempotency record's insert with it. */
const COMMIT = /(^|;\s*)COMMIT;?$/i;

describe('the database connection drops in the middle of a createOrder', () => {
  let databaseUrl: string;
  let proxy: FaultProxy;
  let server: ServerProcess;
  let pen: string;

  beforeAll(async () => {
    databaseUrl = await createTestDatabase();
    proxy = await startFaultProxy(databaseUrl);
    server = await startServer(serverEnv(proxy.url(databaseUrl)));
    pen = await productId(databaseUrl, 'PEN-001');
  });

  afterAll(async () => {
    await stopAllServers();
    await proxy?.close();
    if (databaseUrl) await dropTestDatabase(databaseUrl);
  });

  it('answers SERVICE_UNAVAILABLE when the connection drops as the transaction begins, and the retry executes once', async () => {
    const user = 'loss-at-begin';
    const token = await tokenFor(user);
    const before = await ledger(databaseUrl, user, pen);
    const fired = proxy.arm({ query: /^BEGIN/i, when: 'before' });

    const cut = await createOrder(server.url, token, 'begin-1', pen);
    await fired;
    const stored = await ledger(databaseUrl, user, pen);
    const retry = await createOrder(server.url, token, 'begin-1', pen);

    expect(stored.orderIds).toEqual([]);
    expect(stored.records).toEqual({});
    expect(orderIdOf(retry)).toEqual(expect.any(String));
    expect(markerOf(retry)).toMatchObject({ replayed: false });
    const after = await ledger(databaseUrl, user, pen);
    expect(after.orderIds).toEqual([orderIdOf(retry)]);
    expect(before.stock - after.stock).toBe(1);
    // Checked last so that a wrong code does not hide the state checks above.
    expect(codeOf(cut)).toBe('SERVICE_UNAVAILABLE');
  });

  it('answers SERVICE_UNAVAILABLE when the connection drops before COMMIT arrives, and the retry executes once', async () => {
    const user = 'loss-before-commit';
    const token = await tokenFor(user);
    const before = await ledger(databaseUrl, user, pen);
    const fired = proxy.arm({ query: COMMIT, when: 'before' });

    const cut = await createOrder(server.url, token, 'commit-1', pen);
    await fired;
    expect(codeOf(cut)).toBe('SERVICE_UNAVAILABLE');
    const stored = await ledger(databaseUrl, user, pen);
    expect(stored.orderIds).toEqual([]);
    expect(stored.records).toEqual({});

    const retry = await createOrder(server.url, token, 'commit-1', pen);
    expect(orderIdOf(retry)).toEqual(expect.any(String));
    expect(markerOf(retry)).toMatchObject({ replayed: false });
    const after = await ledger(databaseUrl, user, pen);
    expect(after.orderIds).toEqual([orderIdOf(retry)]);
    expect(after.records).toEqual({ 'commit-1': orderIdOf(retry) });
    expect(before.stock - after.stock).toBe(1);
  });

  it('answers SERVICE_UNAVAILABLE when the COMMIT ran but its answer was lost, and the retry replays that order', async () => {
    const user = 'loss-after-commit';
    const token = await tokenFor(user);
    const before = await ledger(databaseUrl, user, pen);
    const fired = proxy.arm({ query: COMMIT, when: 'after' });

    const cut = await createOrder(server.url, token, 'commit-2', pen);
    await fired;
    expect(codeOf(cut)).toBe('SERVICE_UNAVAILABLE');

    const retry = await createOrder(server.url, token, 'commit-2', pen);
    expect(markerOf(retry)).toMatchObject({ replayed: true });
    const after = await ledger(databaseUrl, user, pen);
    expect(after.orderIds).toEqual([orderIdOf(retry)]);
    expect(after.records).toEqual({ 'commit-2': orderIdOf(retry) });
    expect(before.stock - after.stock).toBe(1);
  });
});
