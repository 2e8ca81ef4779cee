import { randomBytes, randomUUID } from 'node:crypto';
import type { GraphQLResponse } from '../../support/server';
import {
  CANCEL_ORDER,
  type Cancelled,
  CREATE_ORDER_ID_ONLY,
  codesOf,
  DAY_MS,
  markersOf,
  newKey,
  type OrderView,
  type Placed,
  type ProductView,
  replayedHeader,
  useRulesServers,
} from './support';

// Rules I4, I5 and I6 of docs/idempotency.md (#i4-atomic-first-execution, #i5-replay, #i6-replay-marker),
// observed over HTTP against the real server and database.

describe('idempotency rules', () => {
  const ctx = useRulesServers({ uncached: true });
  const { sql, newProduct, stockOf, snapshot, rowsOf, send, placeOrder, placed, mug } = ctx;

  describe('I4 and I5: one atomic first execution, then replays of the whole payload', () => {
    it('replays every field of the first payload, whatever the first selection, after stock, price and status changed', async () => {
      const product = await newProduct(50, 1250);
      const key = newKey();
      const first = await placed({ lines: [{ productId: product, quantity: 2 }] }, key, { query: CREATE_ORDER_ID_ONLY });
      const orderId = first.body.data!.createOrder.order.id;
      expect(first.body.data!.createOrder.order).toEqual({ id: orderId });
      const stockAtFirst = await stockOf(product);
      const [row] = await sql<{ created_at: Date }>('select created_at from orders where id = $1', [orderId]);

      await placed({ lines: [{ productId: product, quantity: 3 }] }, newKey());
      expect(
        (await send<Cancelled>(CANCEL_ORDER, { input: { orderId }, key: newKey() }, { token: ctx.alice })).body.errors,
      ).toBeUndefined();
      await sql("update products set price_cents = 9999, name = 'Renamed' where id = $1", [product]);
      const stockNow = await stockOf(product);
      expect(stockNow).not.toBe(stockAtFirst);
      const before = await snapshot();

      const cachedReplay = await placeOrder({ lines: [{ productId: product, quantity: 2 }] }, key);
      const databaseReplay = await placeOrder({ lines: [{ productId: product, quantity: 2 }] }, key, { on: ctx.uncached });

      const expected: OrderView = {
        id: orderId,
        status: 'PLACED',
        totalCents: 2500,
        currency: 'USD',
        note: null,
        createdAt: row!.created_at.toISOString(),
        cancelledAt: null,
        lines: [
          {
            quantity: 2,
            unitPriceCents: 1250,
            lineTotalCents: 2500,
            product: {
              id: product,
              sku: expect.stringMatching(/^RULES-/),
              name: expect.not.stringMatching(/Renamed/),
              priceCents: 1250,
              currency: 'USD',
              stock: stockAtFirst,
            },
          },
        ],
      };
      for (const replay of [cachedReplay, databaseReplay]) {
        expect(replay.body.errors).toBeUndefined();
        expect(replay.body.data!.createOrder.order).toEqual(expected);
        expect(markersOf(replay)).toEqual([expect.objectContaining({ replayed: true })]);
      }
      expect(databaseReplay.body.data).toEqual(cachedReplay.body.data);
      expect(await snapshot()).toEqual(before);
      expect(await stockOf(product)).toBe(stockNow);
    });

    it('stores the payload the first execution returned, in the record committed with the order', async () => {
      const key = newKey();

      const first = await placed(mug(3), key);

      const order = first.body.data!.createOrder.order;
      const [row] = await rowsOf(key);
      expect(row!.outcome).toBe('SUCCEEDED');
      expect(row!.result).toEqual({ kind: 'payload', payload: { order: expect.objectContaining({ id: order.id }) } });
      const stored = (row!.result as { payload: { order: OrderView & { lines: { product: ProductView }[] } } }).payload.order;
      expect(stored.lines.map((line) => line.product)).toEqual(order.lines.map((line) => expect.objectContaining(line.product)));
      expect(stored.totalCents).toBe(order.totalCents);
    });

    it('executes nothing on a replay: no order, no stock change, no write statement', async () => {
      const key = newKey();
      const first = await placed(mug(2), key);
      const before = await snapshot();

      for (const target of [ctx.server, ctx.uncached, ctx.server, ctx.uncached]) {
        target.resetStatements();
        const replay = await placeOrder(mug(2), key, { on: target });
        expect(replay.body.data?.createOrder.order).toEqual(first.body.data!.createOrder.order);
        const writes = target.statements.filter((statement) => /^\s*(insert|update|delete|begin|start transaction)\b/i.test(statement));
        expect(writes).toEqual([]);
      }
      expect(await snapshot()).toEqual(before);
    });

    it('commits no order when its record cannot be written, and the key then executes normally', async () => {
      const key = `fail-record-${randomBytes(6).toString('hex')}`;
      const product = await newProduct(10);
      await sql(`create or replace function rules_test_fail_record() returns trigger language plpgsql as $$
                 begin
                   if new.key like 'fail-record-%' then raise exception 'record write failed on purpose'; end if;
                   return new;
                 end $$`);
      await sql(
        'create trigger rules_test_fail_record before insert on idempotency_records for each row execute function rules_test_fail_record()',
      );
      const before = await snapshot();
      let failed: GraphQLResponse<Placed>;
      try {
        failed = await placeOrder({ lines: [{ productId: product, quantity: 4 }] }, key);
      } finally {
        await sql('drop trigger rules_test_fail_record on idempotency_records');
        await sql('drop function rules_test_fail_record()');
      }

      expect(failed.body.data ?? null).toBeNull();
      expect(codesOf(failed)).toEqual(['INTERNAL_SERVER_ERROR']);
      expect(await snapshot()).toEqual(before);
      expect(await stockOf(product)).toBe(10);

      const retry = await placed({ lines: [{ productId: product, quantity: 4 }] }, key);
      expect(markersOf(retry)).toEqual([expect.objectContaining({ key, replayed: false })]);
      expect(await stockOf(product)).toBe(6);
    });
  });

  describe('I6: the replay marker', () => {
    it('reports the first execution and its replays in extensions.idempotency and the Idempotent-Replayed header', async () => {
      const key = newKey();

      const first = await placed(mug(), key);
      const replays = [await placeOrder(mug(), key), await placeOrder(mug(), key, { on: ctx.uncached })];

      const [row] = await rowsOf(key);
      const marker = markersOf(first)![0]!;
      expect(markersOf(first)).toEqual([
        {
          path: ['createOrder'],
          key,
          replayed: false,
          firstExecutedAt: row!.created_at.toISOString(),
          expiresAt: row!.expires_at.toISOString(),
          forgottenAt: row!.forgotten_at!.toISOString(),
        },
      ]);
      expect(Date.parse(marker.expiresAt) - Date.parse(marker.firstExecutedAt)).toBe(DAY_MS);
      expect(Date.parse(marker.forgottenAt) - Date.parse(marker.expiresAt)).toBe(30 * DAY_MS);
      expect(replayedHeader(first)).toBeNull();
      for (const replay of replays) {
        expect(markersOf(replay)).toEqual([{ ...marker, replayed: true }]);
        expect(replayedHeader(replay)).toBe('true');
      }
    });

    it('reports the response path of an aliased field', async () => {
      const key = newKey();
      const query = `mutation ($input: CreateOrderInput!, $key: IdempotencyKey) {
        placed: createOrder(input: $input, idempotencyKey: $key) { order { id } } }`;

      const first = await send(query, { input: mug(), key }, { token: ctx.alice });
      const replay = await send(query, { input: mug(), key }, { token: ctx.alice });

      expect(markersOf(first)).toEqual([expect.objectContaining({ path: ['placed'], key, replayed: false })]);
      expect(markersOf(replay)).toEqual([expect.objectContaining({ path: ['placed'], key, replayed: true })]);
    });

    it('carries the entry of a stored failure and of its replay', async () => {
      const key = newKey();
      const input = { lines: [{ productId: randomUUID(), quantity: 1 }] };

      const first = await placeOrder(input, key);
      const replay = await placeOrder(input, key, { on: ctx.uncached });

      expect(codesOf(first)).toEqual(['PRODUCT_NOT_FOUND']);
      const marker = markersOf(first)![0]!;
      expect(marker).toEqual(expect.objectContaining({ path: ['createOrder'], key, replayed: false }));
      expect(replayedHeader(first)).toBeNull();
      expect(codesOf(replay)).toEqual(['PRODUCT_NOT_FOUND']);
      expect(markersOf(replay)).toEqual([{ ...marker, replayed: true }]);
      expect(replayedHeader(replay)).toBe('true');
    });

    it('reports one entry per idempotent field, each with its own path and key', async () => {
      const [firstKey, secondKey, thirdKey] = [newKey(), newKey(), newKey()];
      const query = `mutation Two($input: CreateOrderInput!, $a: IdempotencyKey, $b: IdempotencyKey) {
        first: createOrder(input: $input, idempotencyKey: $a) { order { id } }
        second: createOrder(input: $input, idempotencyKey: $b) { order { id } }
      }`;

      const both = await send(query, { input: mug(), a: firstKey, b: secondKey }, { token: ctx.alice });
      const mixed = await send(query, { input: mug(), a: firstKey, b: thirdKey }, { token: ctx.alice });

      expect(markersOf(both)).toEqual([
        expect.objectContaining({ path: ['first'], key: firstKey, replayed: false }),
        expect.objectContaining({ path: ['second'], key: secondKey, replayed: false }),
      ]);
      expect(replayedHeader(both)).toBeNull();
      expect(markersOf(mixed)).toEqual([
        { ...markersOf(both)![0]!, replayed: true },
        expect.objectContaining({ path: ['second'], key: thirdKey, replayed: false }),
      ]);
      expect(replayedHeader(mixed)).toBe('true');
    });

    it('reports nothing for an operation without idempotent fields', async () => {
      const response = await send(`query { viewer { id } }`, undefined, { token: ctx.alice, header: newKey() });

      expect(response.body.errors).toBeUndefined();
      expect(markersOf(response)).toBeUndefined();
      expect(replayedHeader(response)).toBeNull();
    });
  });
});
