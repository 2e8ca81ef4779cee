import { randomBytes, randomUUID } from 'node:crypto';
import type { GraphQLResponse } from '../../support/server';
import { CREATE_ORDER_ID_ONLY, codesOf, markersOf, newKey, type Placed, type Snapshot, useRulesServers } from './support';

// Rule I1 of docs/idempotency.md (#i1-key), observed over HTTP against the real server and database.

describe('idempotency rules', () => {
  const ctx = useRulesServers();
  const { productId, countOrders, snapshot, rowsOf, send, placeOrder, placed, mug } = ctx;

  describe('I1: where the key comes from', () => {
    it('takes the key from the idempotencyKey argument', async () => {
      const key = newKey();

      const first = await placed(mug(), key);
      const retry = await placeOrder(mug(), key);

      expect(markersOf(first)).toEqual([expect.objectContaining({ key, replayed: false })]);
      expect(retry.body.data?.createOrder.order.id).toBe(first.body.data!.createOrder.order.id);
      expect(markersOf(retry)).toEqual([expect.objectContaining({ key, replayed: true })]);
      expect((await rowsOf(key)).map((row) => row.user_id)).toEqual(['alice']);
    });

    it('takes the key from the Idempotency-Key header', async () => {
      const key = newKey();

      const first = await placed(mug(), undefined, { header: key });
      const retry = await placeOrder(mug(), undefined, { header: key });

      expect(markersOf(first)).toEqual([expect.objectContaining({ key, replayed: false })]);
      expect(retry.body.data?.createOrder.order.id).toBe(first.body.data!.createOrder.order.id);
      expect(markersOf(retry)).toEqual([expect.objectContaining({ key, replayed: true })]);
      expect((await rowsOf(key)).map((row) => row.user_id)).toEqual(['alice']);
    });

    it('accepts the same key in the argument and the header', async () => {
      const key = newKey();
      const before = await countOrders();

      const response = await placed(mug(), key, { header: key });

      expect(markersOf(response)).toEqual([expect.objectContaining({ key, replayed: false })]);
      expect(await countOrders()).toBe(before + 1);
      expect(await rowsOf(key)).toHaveLength(1);
    });

    it('treats an explicit null argument as absent and uses the header', async () => {
      const key = newKey();

      const first = await placed(mug(), undefined, { header: key });
      const literal = `mutation { createOrder(input: { lines: [{ productId: "${productId('MUG-001')}", quantity: 1 }] }, idempotencyKey: null) {
        order { id } } }`;
      const viaLiteral = await send<Placed>(literal, undefined, { token: ctx.alice, header: key });
      const viaNullVariable = await send<Placed>(CREATE_ORDER_ID_ONLY, { input: mug(), key: null }, { token: ctx.alice, header: key });

      expect(viaLiteral.body.errors).toBeUndefined();
      expect(viaNullVariable.body.errors).toBeUndefined();
      expect(viaLiteral.body.data?.createOrder.order.id).toBe(first.body.data!.createOrder.order.id);
      expect(viaNullVariable.body.data?.createOrder.order.id).toBe(first.body.data!.createOrder.order.id);
      expect(markersOf(viaLiteral)).toEqual([expect.objectContaining({ key, replayed: true })]);
      expect(await rowsOf(key)).toHaveLength(1);
    });

    it.each([
      ['1 character', 'k'],
      ['64 characters', `${randomBytes(16).toString('hex')}${'_-'.repeat(16)}`],
    ])('stores and replays a key of %s, from the argument or the header', async (_case, key) => {
      const [argumentUser, headerUser] = [await ctx.server.token(`edge-${randomUUID()}`), await ctx.server.token(`edge-${randomUUID()}`)];

      const viaArgument = await placed(mug(), key, { token: argumentUser });
      const viaHeader = await placed(mug(), undefined, { token: headerUser, header: key });
      const replays = [
        await placeOrder(mug(), undefined, { token: argumentUser, header: key }),
        await placeOrder(mug(), key, { token: headerUser }),
      ];

      expect(replays.map((replay) => replay.body.data?.createOrder.order.id)).toEqual([
        viaArgument.body.data!.createOrder.order.id,
        viaHeader.body.data!.createOrder.order.id,
      ]);
      expect(replays.map((replay) => markersOf(replay)?.[0]?.replayed)).toEqual([true, true]);
      expect((await rowsOf(key)).map((row) => row.key)).toEqual([key, key]);
    });

    it('executes two aliased fields that each pass their own key, without a header', async () => {
      const [firstKey, secondKey] = [newKey(), newKey()];
      const before = await countOrders();
      const query = `mutation Two($input: CreateOrderInput!, $a: IdempotencyKey, $b: IdempotencyKey) {
        first: createOrder(input: $input, idempotencyKey: $a) { order { id } }
        second: createOrder(input: $input, idempotencyKey: $b) { order { id } }
      }`;

      const response = await send<{ first: { order: { id: string } }; second: { order: { id: string } } }>(
        query,
        { input: mug(), a: firstKey, b: secondKey },
        { token: ctx.alice },
      );

      expect(response.body.errors).toBeUndefined();
      expect(response.body.data!.first.order.id).not.toBe(response.body.data!.second.order.id);
      expect(await countOrders()).toBe(before + 2);
      expect(await rowsOf(firstKey)).toHaveLength(1);
      expect(await rowsOf(secondKey)).toHaveLength(1);
    });

    describe('refuses the request and executes or stores nothing', () => {
      async function expectRefused(response: GraphQLResponse<unknown>, code: string, before: Snapshot, keys: string[] = []) {
        expect(Object.values(response.body.data ?? {}).filter((value) => value !== null)).toEqual([]);
        expect(response.body.errors?.length ?? 0).toBeGreaterThan(0);
        expect(new Set(codesOf(response))).toEqual(new Set([code]));
        expect(markersOf(response)).toBeUndefined();
        expect(await snapshot()).toEqual(before);
        for (const key of keys) expect(await rowsOf(key)).toEqual([]);
      }

      it('answers IDEMPOTENCY_KEY_INVALID when the argument and the header differ', async () => {
        const [argument, header] = [newKey(), newKey()];
        const before = await snapshot();

        const response = await placeOrder(mug(), argument, { header });

        await expectRefused(response, 'IDEMPOTENCY_KEY_INVALID', before, [argument, header]);
      });

      it('answers IDEMPOTENCY_KEY_INVALID when the header is used by an operation with two idempotent fields', async () => {
        const header = newKey();
        const before = await snapshot();
        const query = `mutation Two($input: CreateOrderInput!) {
          first: createOrder(input: $input) { order { id } }
          second: createOrder(input: $input) { order { id } }
        }`;

        const response = await send(query, { input: mug() }, { token: ctx.alice, header });

        await expectRefused(response, 'IDEMPOTENCY_KEY_INVALID', before, [header]);
      });

      it('answers IDEMPOTENCY_KEY_INVALID when the header is used by two different idempotent fields, one in a fragment', async () => {
        const header = newKey();
        const order = (await placed(mug(), newKey())).body.data!.createOrder.order;
        const before = await snapshot();
        const query = `mutation Mixed($input: CreateOrderInput!, $cancel: CancelOrderInput!) {
          createOrder(input: $input) { order { id } }
          ...Cancel
        }
        fragment Cancel on Mutation { cancelOrder(input: $cancel) { order { id } } }`;

        const response = await send(query, { input: mug(), cancel: { orderId: order.id } }, { token: ctx.alice, header });

        await expectRefused(response, 'IDEMPOTENCY_KEY_INVALID', before, [header]);
      });

      it('answers IDEMPOTENCY_KEY_MISSING when neither an argument nor a header is given', async () => {
        const before = await snapshot();

        const response = await placeOrder(mug(), undefined);

        await expectRefused(response, 'IDEMPOTENCY_KEY_MISSING', before);
      });

      it('answers IDEMPOTENCY_KEY_MISSING for an explicit null argument without a header', async () => {
        const before = await snapshot();
        const literal = `mutation { createOrder(input: { lines: [{ productId: "${productId('MUG-001')}", quantity: 1 }] }, idempotencyKey: null) {
          order { id } } }`;

        const viaVariable = await send(CREATE_ORDER_ID_ONLY, { input: mug(), key: null }, { token: ctx.alice });
        const viaLiteral = await send(literal, undefined, { token: ctx.alice });

        await expectRefused(viaVariable, 'IDEMPOTENCY_KEY_MISSING', before);
        await expectRefused(viaLiteral, 'IDEMPOTENCY_KEY_MISSING', before);
      });

      const malformed: [string, unknown][] = [
        ['an empty string', ''],
        ['a space inside', 'a b'],
        ['65 characters', 'k'.repeat(65)],
        ['a leading space', ' abc'],
        ['a trailing newline', 'abc\n'],
        ['a non-ASCII letter', 'clé'],
        ['a dot', 'order.1'],
        ['a number', 42],
      ];

      it.each(malformed)('answers IDEMPOTENCY_KEY_INVALID, not BAD_USER_INPUT, for %s in a variable', async (_case, key) => {
        const before = await snapshot();

        const response = await send(CREATE_ORDER_ID_ONLY, { input: mug(), key }, { token: ctx.alice });

        await expectRefused(response, 'IDEMPOTENCY_KEY_INVALID', before);
      });

      it.each(
        malformed.filter(([, key]) => typeof key === 'string'),
      )('answers IDEMPOTENCY_KEY_INVALID for %s in a string literal', async (_case, key) => {
        const before = await snapshot();
        const query = `mutation { createOrder(input: { lines: [{ productId: "${productId('MUG-001')}", quantity: 1 }] }, idempotencyKey: ${JSON.stringify(key)}) {
            order { id } } }`;

        const response = await send(query, undefined, { token: ctx.alice });

        await expectRefused(response, 'IDEMPOTENCY_KEY_INVALID', before);
      });

      it.each([
        ['a number', '42'],
        ['a list', '["key-1"]'],
      ])('answers IDEMPOTENCY_KEY_INVALID for %s as a literal key', async (_case, literal) => {
        const before = await snapshot();
        const query = `mutation { createOrder(input: { lines: [{ productId: "${productId('MUG-001')}", quantity: 1 }] }, idempotencyKey: ${literal}) {
            order { id } } }`;

        const response = await send(query, undefined, { token: ctx.alice });

        await expectRefused(response, 'IDEMPOTENCY_KEY_INVALID', before);
      });

      it.each([
        ['an empty header', ''],
        ['a space inside', 'a b'],
        ['65 characters', 'h'.repeat(65)],
        ['a non-ASCII letter', 'clé'],
        ['a comma, as when the header is repeated', 'key-1, key-2'],
      ])('answers IDEMPOTENCY_KEY_INVALID for %s in the Idempotency-Key header', async (_case, header) => {
        const before = await snapshot();

        const response = await placeOrder(mug(), undefined, { header });

        await expectRefused(response, 'IDEMPOTENCY_KEY_INVALID', before);
      });
    });
  });
});
