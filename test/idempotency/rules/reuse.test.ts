import { randomUUID } from 'node:crypto';
import type { TestServer } from '../../support/server';
import { CANCEL_ORDER, type Cancelled, codesOf, newKey, replayedHeader, useRulesServers } from './support';

// Rule I7 of docs/idempotency.md (#i7-reuse-with-other-arguments), observed over HTTP against the real server and database.

describe('idempotency rules', () => {
  const ctx = useRulesServers({ uncached: true });
  const { sql, snapshot, rowsOf, send, placeOrder, placed, mug } = ctx;

  describe('I7: a key reused with other arguments', () => {
    const targets: [string, () => TestServer][] = [
      ['from the cache', () => ctx.server],
      ['from the database', () => ctx.uncached],
    ];

    it.each(
      targets,
    )('answers IDEMPOTENCY_KEY_REUSED for other arguments, executes nothing and keeps the record (%s)', async (_case, target) => {
      const key = newKey();
      const first = await placed(mug(1), key);
      const orderId = first.body.data!.createOrder.order.id;
      const rowBefore = await rowsOf(key);
      const before = await snapshot();

      const reused = await placeOrder(mug(5), key, { on: target() });

      expect(codesOf(reused)).toEqual(['IDEMPOTENCY_KEY_REUSED']);
      expect(reused.body.data ?? null).toBeNull();
      expect(JSON.stringify(reused.body)).not.toContain(orderId);
      expect(replayedHeader(reused)).toBeNull();
      expect(await snapshot()).toEqual(before);
      expect(await rowsOf(key)).toEqual(rowBefore);
      const replay = await placeOrder(mug(1), key, { on: target() });
      expect(replay.body.data?.createOrder.order).toEqual(first.body.data!.createOrder.order);
    });

    it.each(targets)('answers IDEMPOTENCY_KEY_REUSED for the key of a createOrder used by a cancelOrder (%s)', async (_case, target) => {
      const key = newKey();
      const first = await placed(mug(1), key);
      const orderId = first.body.data!.createOrder.order.id;
      const rowBefore = await rowsOf(key);
      const before = await snapshot();

      const reused = await send<Cancelled>(CANCEL_ORDER, { input: { orderId }, key }, { token: ctx.alice, on: target() });

      expect(codesOf(reused)).toEqual(['IDEMPOTENCY_KEY_REUSED']);
      expect(reused.body.data ?? null).toBeNull();
      expect(JSON.stringify(reused.body)).not.toContain(first.body.data!.createOrder.order.createdAt);
      expect(await snapshot()).toEqual(before);
      expect(await sql('select status from orders where id = $1', [orderId])).toEqual([{ status: 'PLACED' }]);
      expect(await rowsOf(key)).toEqual(rowBefore);
    });

    it('answers IDEMPOTENCY_KEY_REUSED, not the stored failure, for other arguments after a failure', async () => {
      const key = newKey();
      const missing = randomUUID();
      const first = await placeOrder({ lines: [{ productId: missing, quantity: 1 }] }, key);
      expect(codesOf(first)).toEqual(['PRODUCT_NOT_FOUND']);
      const rowBefore = await rowsOf(key);
      const before = await snapshot();

      const reused = await placeOrder(mug(1), key, { on: ctx.uncached });

      expect(codesOf(reused)).toEqual(['IDEMPOTENCY_KEY_REUSED']);
      expect(JSON.stringify(reused.body)).not.toContain(missing);
      expect(await snapshot()).toEqual(before);
      expect(await rowsOf(key)).toEqual(rowBefore);
    });
  });
});
