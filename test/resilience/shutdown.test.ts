import net from 'node:net';
import { createTestDatabase, dropTestDatabase } from '../support/database';
import { lockProducts, untilLockWaitersOn } from '../support/locks';
import {
  type CreateOrderResponse,
  createOrder,
  ledger,
  markerOf,
  orderIdOf,
  productId,
  sleep,
  untilNoOtherConnections,
} from '../support/orders-client';
import { type ServerProcess, serverEnv, signalServer, startServer, stopAllServers, tokenFor } from '../support/processes';

// SIGTERM while a mutation is in flight (main.ts): HTTP drains for SHUTDOWN_GRACE_MS, then the
// remaining connections are cut and the process exits. Either way rule I4 must hold: an order
// and its record commit together or not at all, and a retry with the key settles the outcome.

/** What a client saw: a response, or the connection failing under it. */
type Outcome = { kind: 'response'; response: CreateOrderResponse } | { kind: 'network-error'; error: unknown };

function settle(request: Promise<CreateOrderResponse>): Promise<Outcome> {
  return request.then(
    (response) => ({ kind: 'response', response }),
    (error: unknown) => ({ kind: 'network-error', error }),
  );
}

/** Resolves once a new TCP connection to `port` on 127.0.0.1 is refused (polled). */
async function untilRefused(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await connectionRefused(port))) {
    if (Date.now() > deadline) throw new Error('the listener still accepted connections 10 s after SIGTERM');
    await sleep(25);
  }
}

/** Whether a TCP connection to `port` on 127.0.0.1 is refused. */
function connectionRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
}

describe('SIGTERM with a createOrder in flight', () => {
  let databaseUrl: string;
  let pen: string;

  beforeAll(async () => {
    databaseUrl = await createTestDatabase();
    // One start migrates and seeds; the tests' servers then find the database ready.
    const first = await startServer(serverEnv(databaseUrl));
    expect(await signalServer(first, 'SIGTERM')).toEqual({ code: 0, signal: null });
    pen = await productId(databaseUrl, 'PEN-001');
  });

  afterAll(async () => {
    await stopAllServers();
    if (databaseUrl) await dropTestDatabase(databaseUrl);
  });

  it('refuses new connections during the drain while the in-flight order finishes, exits 0, and the key replays that order', async () => {
    const user = 'shutdown-drain';
    const token = await tokenFor(user);
    const key = 'drain-key-1';
    // Neither the grace period nor the lock timeout can end the drain: only the released lock does.
    const server = await startServer(serverEnv(databaseUrl, { SHUTDOWN_GRACE_MS: '600000', IDEMPOTENCY_WAIT_MS: '600000' }));
    const port = Number(new URL(server.url).port);
    let exited = false;
    void server.exited.then(() => {
      exited = true;
    });

    const release = await lockProducts(databaseUrl, [pen]);
    try {
      let settled = false;
      const outcome = settle(createOrder(server.url, token, key, pen)).finally(() => {
        settled = true;
      });
      await untilLockWaitersOn(databaseUrl);
      const exit = signalServer(server, 'SIGTERM');
      await untilRefused(port);
      // The listener is closed while the order is provably still running: it waits for the held lock.
      expect(settled).toBe(false);
      expect(exited).toBe(false);
      await release();

      const seen = await outcome;
      if (seen.kind !== 'response') throw new Error(`the in-flight request was cut: ${String(seen.error)}`);
      expect(seen.response.status).toBe(200);
      expect(seen.response.body.errors).toBeUndefined();
      const orderId = orderIdOf(seen.response);
      expect(orderId).toEqual(expect.any(String));
      expect(markerOf(seen.response)).toMatchObject({ key, replayed: false });
      expect(await exit).toEqual({ code: 0, signal: null });

      const restarted = await startServer(serverEnv(databaseUrl));
      const retry = await createOrder(restarted.url, token, key, pen);
      expect(retry.body.errors).toBeUndefined();
      expect(orderIdOf(retry)).toBe(orderId);
      expect(markerOf(retry)).toMatchObject({ key, replayed: true });
      expect(await signalServer(restarted, 'SIGTERM')).toEqual({ code: 0, signal: null });

      const stored = await ledger(databaseUrl, user, pen);
      expect(stored.orderIds).toEqual([orderId]);
      expect(stored.records).toEqual({ [key]: orderId });
    } finally {
      await release();
    }
  });

  it('cuts a request still blocked when SHUTDOWN_GRACE_MS ends, exits 0 while the lock is still held, and stores nothing', async () => {
    const user = 'shutdown-grace';
    const token = await tokenFor(user);
    const key = 'grace-key-1';
    // The lock timeout is ten minutes: only the grace period can end the blocked request.
    const server: ServerProcess = await startServer(serverEnv(databaseUrl, { SHUTDOWN_GRACE_MS: '500', IDEMPOTENCY_WAIT_MS: '600000' }));
    const before = await ledger(databaseUrl, user, pen);

    const release = await lockProducts(databaseUrl, [pen]);
    try {
      const outcome = settle(createOrder(server.url, token, key, pen));
      await untilLockWaitersOn(databaseUrl);
      // The lock is released only after the process has exited: a server that waited for the
      // blocked transaction instead of honouring its grace would never exit (signalServer fails).
      const exit = await signalServer(server, 'SIGTERM');
      expect(exit).toEqual({ code: 0, signal: null });
      const seen = await outcome;
      expect(seen.kind).toBe('network-error');
      await release();

      // The killed transaction never got the lock; once its session is gone nothing of it can commit.
      await untilNoOtherConnections(databaseUrl);
      const after = await ledger(databaseUrl, user, pen);
      expect(after.orderIds).toEqual([]);
      expect(after.records).toEqual({});
      expect(after.stock).toBe(before.stock);

      const restarted = await startServer(serverEnv(databaseUrl));
      const retry = await createOrder(restarted.url, token, key, pen);
      expect(retry.body.errors).toBeUndefined();
      expect(markerOf(retry)).toMatchObject({ key, replayed: false });
      expect(await signalServer(restarted, 'SIGTERM')).toEqual({ code: 0, signal: null });
      expect((await ledger(databaseUrl, user, pen)).orderIds).toEqual([orderIdOf(retry)]);
    } finally {
      await release();
    }
  });
});
