import { randomBytes, randomUUID } from 'node:crypto';
import type { TestServer } from '../../support/server';
import {
  CANCEL_ORDER,
  type Cancelled,
  CREATE_ORDER_ID_ONLY,
  CREATE_PRODUCT,
  type CreatedProduct,
  codesOf,
  markersOf,
  newKey,
  type StoredRow,
  useRulesServers,
} from './support';

// Rule I9 of docs/idempotency.md (#i9-what-is-stored), observed over HTTP against the real server and database.

describe('idempotency rules', () => {
  const ctx = useRulesServers({ uncached: true });
  const { sql, productId, newProduct, stockOf, countOrders, snapshot, rowsOf, send, placeOrder, placed, mug } = ctx;

  describe('I9: what is stored', () => {
    function expectStoredFailure(rows: StoredRow[], operation: string, code: string): void {
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ operation, outcome: 'FAILED', result: { kind: 'error', code } });
    }

    it('stores INSUFFICIENT_STOCK and replays it after the stock was raised; a new key then succeeds', async () => {
      const product = await newProduct(2);
      const other = await newProduct(10);
      const key = newKey();
      const input = {
        lines: [
          { productId: other, quantity: 1 },
          { productId: product, quantity: 3 },
        ],
      };
      const before = await snapshot();

      const first = await placeOrder(input, key);

      expect(codesOf(first)).toEqual(['INSUFFICIENT_STOCK']);
      expect(first.body.data ?? null).toBeNull();
      expectStoredFailure(await rowsOf(key), 'createOrder', 'INSUFFICIENT_STOCK');
      expect(await snapshot()).toEqual({ ...before, records: before.records + 1 });

      await sql('update products set stock = 100 where id = $1', [product]);
      const afterRaise = await snapshot();
      const replays = [await placeOrder(input, key), await placeOrder(input, key, { on: ctx.uncached })];
      for (const replay of replays) {
        expect(replay.body.errors).toEqual(first.body.errors);
        expect(replay.body.data ?? null).toBeNull();
      }
      expect(await snapshot()).toEqual(afterRaise);

      const fresh = await placed(input, newKey());
      expect(fresh.body.data!.createOrder.order.lines.map((line) => line.quantity)).toEqual([1, 3]);
      expect([await stockOf(other), await stockOf(product)]).toEqual([9, 97]);
    });

    it('stores PRODUCT_NOT_FOUND and replays it after the product appeared; a new key then succeeds', async () => {
      const missing = randomUUID();
      const key = newKey();
      const input = { lines: [{ productId: missing, quantity: 1 }] };

      const first = await placeOrder(input, key);
      expect(codesOf(first)).toEqual(['PRODUCT_NOT_FOUND']);
      expect(first.body.errors![0]!.message).toContain(missing);
      expectStoredFailure(await rowsOf(key), 'createOrder', 'PRODUCT_NOT_FOUND');

      await sql(
        `insert into products (id, sku, name, price_cents, currency, stock, created_at)
                 values ($1, $2, 'Late product', 100, 'USD', 10, now())`,
        [missing, `LATE-${randomBytes(4).toString('hex')}`],
      );
      const before = await snapshot();
      const replay = await placeOrder(input, key, { on: ctx.uncached });
      expect(replay.body.errors).toEqual(first.body.errors);
      expect(await snapshot()).toEqual(before);

      const fresh = await placed(input, newKey());
      expect(fresh.body.data!.createOrder.order.lines[0]!.product.id).toBe(missing);
    });

    it('stores ORDER_NOT_CANCELLABLE and replays it after the order became cancellable again; a new key then cancels', async () => {
      const order = (await placed(mug(1), newKey())).body.data!.createOrder.order;
      const cancel = (key: string, target: TestServer = ctx.server) =>
        send<Cancelled>(CANCEL_ORDER, { input: { orderId: order.id }, key }, { token: ctx.alice, on: target });
      expect((await cancel(newKey())).body.errors).toBeUndefined();
      const key = newKey();

      const first = await cancel(key);
      expect(codesOf(first)).toEqual(['ORDER_NOT_CANCELLABLE']);
      expectStoredFailure(await rowsOf(key), 'cancelOrder', 'ORDER_NOT_CANCELLABLE');

      await sql("update orders set status = 'PLACED', cancelled_at = null where id = $1", [order.id]);
      await sql('update products set stock = stock - 1 where id = $1', [productId('MUG-001')]);
      const before = await snapshot();
      for (const replay of [await cancel(key), await cancel(key, ctx.uncached)]) {
        expect(replay.body.errors).toEqual(first.body.errors);
      }
      expect(await snapshot()).toEqual(before);

      const fresh = await cancel(newKey());
      expect(fresh.body.errors).toBeUndefined();
      expect(fresh.body.data!.cancelOrder.order.status).toBe('CANCELLED');
    });

    it('stores SKU_TAKEN and replays it after the SKU was freed; a new key then creates the product', async () => {
      const sku = `RULES-SKU-${randomBytes(4).toString('hex')}`;
      const input = { sku, name: 'Rules product', priceCents: 500, currency: 'USD', stock: 5 };
      const created = await send<CreatedProduct>(CREATE_PRODUCT, { input, key: newKey() }, { token: ctx.admin });
      expect(created.body.errors).toBeUndefined();
      const key = newKey();

      const first = await send<CreatedProduct>(CREATE_PRODUCT, { input, key }, { token: ctx.admin });
      expect(codesOf(first)).toEqual(['SKU_TAKEN']);
      expectStoredFailure(await rowsOf(key), 'createProduct', 'SKU_TAKEN');

      await sql('update products set sku = $2 where sku = $1', [sku, `${sku}-OLD`]);
      const before = await snapshot();
      const replay = await send<CreatedProduct>(CREATE_PRODUCT, { input, key }, { token: ctx.admin, on: ctx.uncached });
      expect(replay.body.errors).toEqual(first.body.errors);
      expect(await snapshot()).toEqual(before);

      const fresh = await send<CreatedProduct>(CREATE_PRODUCT, { input, key: newKey() }, { token: ctx.admin });
      expect(fresh.body.errors).toBeUndefined();
      expect(fresh.body.data!.createProduct.product.sku).toBe(sku);
    });

    it('stores nothing for BAD_USER_INPUT, so the same key works with the corrected input', async () => {
      const key = newKey();
      const before = await snapshot();

      const zero = await placeOrder(mug(0), key);
      const uncoercible = await send(
        CREATE_ORDER_ID_ONLY,
        { input: { lines: [{ productId: productId('MUG-001'), quantity: 'one' }] }, key },
        { token: ctx.alice },
      );

      expect(codesOf(zero)).toEqual(['BAD_USER_INPUT']);
      expect(codesOf(uncoercible)).toEqual(['BAD_USER_INPUT']);
      expect(markersOf(zero)).toBeUndefined();
      expect(await rowsOf(key)).toEqual([]);
      expect(await snapshot()).toEqual(before);

      const corrected = await placed(mug(1), key);
      expect(markersOf(corrected)).toEqual([expect.objectContaining({ key, replayed: false })]);
      expect(await countOrders()).toBe(before.orders + 1);
    });

    it('stores nothing when the caller may not run the mutation', async () => {
      const key = newKey();
      const input = { sku: `RULES-DENIED-${randomBytes(4).toString('hex')}`, name: 'Denied', priceCents: 1, currency: 'USD', stock: 1 };
      const before = await snapshot();

      const denied = await send(CREATE_PRODUCT, { input, key }, { token: ctx.bob });
      const anonymous = await placeOrder(mug(1), key, { token: undefined });

      expect(codesOf(denied)).toEqual(['FORBIDDEN']);
      expect(codesOf(anonymous)).toEqual(['UNAUTHENTICATED']);
      expect(await rowsOf(key)).toEqual([]);
      expect(await snapshot()).toEqual(before);
    });
  });
});
