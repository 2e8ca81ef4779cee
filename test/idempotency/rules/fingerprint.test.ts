import { CREATE_ORDER_ID_ONLY, codesOf, markersOf, newKey, type Placed, useRulesServers } from './support';

// Rule I3 of docs/idempotency.md (#i3-fingerprint), observed over HTTP against the real server and database.

describe('idempotency rules', () => {
  const ctx = useRulesServers();
  const { productId, countOrders, snapshot, send, placeOrder, placed, mug } = ctx;

  describe('I3: the fingerprint depends on the arguments only', () => {
    const key = newKey();
    let orderId: string;
    let ordersAfterFirst: number;

    beforeAll(async () => {
      const first = await placed(mug(1), key, { query: CREATE_ORDER_ID_ONLY });
      orderId = first.body.data!.createOrder.order.id;
      ordersAfterFirst = await countOrders();
    });

    type Retry = { query: string; variables?: Record<string, unknown>; header?: string; orderId: (data: never) => string };
    const literalInput = (fields: string) => `{ lines: [{ ${fields} }] }`;
    const retries: [string, () => Retry][] = [
      [
        'another selection set',
        () => ({
          query: `mutation Place($input: CreateOrderInput!, $key: IdempotencyKey) {
            createOrder(input: $input, idempotencyKey: $key) { order { totalCents lines { quantity } id status } } }`,
          variables: { input: mug(1), key },
          orderId: (data: Placed) => data.createOrder.order.id,
        }),
      ],
      [
        'aliases',
        () => ({
          query: `mutation Place($input: CreateOrderInput!, $key: IdempotencyKey) {
            placed: createOrder(input: $input, idempotencyKey: $key) { o: order { orderId: id } } }`,
          variables: { input: mug(1), key },
          orderId: (data: { placed: { o: { orderId: string } } }) => data.placed.o.orderId,
        }),
      ],
      [
        'another operation name',
        () => ({
          query: `mutation RetryAfterTimeout($input: CreateOrderInput!, $key: IdempotencyKey) {
            createOrder(input: $input, idempotencyKey: $key) { order { id } } }`,
          variables: { input: mug(1), key },
          orderId: (data: Placed) => data.createOrder.order.id,
        }),
      ],
      [
        'an anonymous operation',
        () => ({
          query: `mutation ($input: CreateOrderInput!, $key: IdempotencyKey) { createOrder(input: $input, idempotencyKey: $key) { order { id } } }`,
          variables: { input: mug(1), key },
          orderId: (data: Placed) => data.createOrder.order.id,
        }),
      ],
      [
        'inline literals instead of variables',
        () => ({
          query: `mutation { createOrder(input: ${literalInput(`productId: "${productId('MUG-001')}", quantity: 1`)}, idempotencyKey: "${key}") {
            order { id } } }`,
          orderId: (data: Placed) => data.createOrder.order.id,
        }),
      ],
      [
        'input fields in another order',
        () => ({
          query: `mutation { createOrder(idempotencyKey: "${key}", input: { note: null, lines: [{ quantity: 1, productId: "${productId('MUG-001')}" }] }) {
            order { id } } }`,
          orderId: (data: Placed) => data.createOrder.order.id,
        }),
      ],
      [
        'other whitespace, commas and comments',
        () => ({
          query: `
            # a retry from another client
            mutation   Place (  $input : CreateOrderInput! ,, $key:IdempotencyKey )
            {createOrder(input:$input,idempotencyKey:$key){order{id}}}
          `,
          variables: { key, input: { lines: [{ quantity: 1, productId: productId('MUG-001') }] } },
          orderId: (data: Placed) => data.createOrder.order.id,
        }),
      ],
      [
        'note: null in a variable instead of no note',
        () => ({
          query: CREATE_ORDER_ID_ONLY,
          variables: { input: { ...mug(1), note: null }, key },
          orderId: (data: Placed) => data.createOrder.order.id,
        }),
      ],
      [
        'the key in the header instead of the argument',
        () => ({
          query: CREATE_ORDER_ID_ONLY,
          variables: { input: mug(1) },
          header: key,
          orderId: (data: Placed) => data.createOrder.order.id,
        }),
      ],
    ];

    it.each(retries)('replays the first result for a retry that differs only in %s', async (_case, make) => {
      const retry = make();
      const before = await snapshot();

      const response = await send<never>(retry.query, retry.variables, { token: ctx.alice, header: retry.header });

      expect(response.body.errors).toBeUndefined();
      expect(retry.orderId(response.body.data!)).toBe(orderId);
      expect(markersOf(response)).toEqual([expect.objectContaining({ key, replayed: true })]);
      expect(await snapshot()).toEqual(before);
      expect(await countOrders()).toBe(ordersAfterFirst);
    });

    it.each([
      ['another quantity', () => mug(2)],
      ['another product', () => ({ lines: [{ productId: productId('PEN-001'), quantity: 1 }] })],
      ['a note', () => ({ ...mug(1), note: 'leave at the door' })],
      ['an empty note', () => ({ ...mug(1), note: '' })],
      ['an extra line', () => ({ lines: [...mug(1).lines, { productId: productId('PEN-001'), quantity: 1 }] })],
      ['the product id in upper case', () => ({ lines: [{ productId: productId('MUG-001').toUpperCase(), quantity: 1 }] })],
    ])('answers IDEMPOTENCY_KEY_REUSED for a retry with %s', async (_case, input) => {
      const before = await snapshot();

      const response = await placeOrder(input(), key);

      expect(codesOf(response)).toEqual(['IDEMPOTENCY_KEY_REUSED']);
      expect(response.body.data ?? null).toBeNull();
      expect(await snapshot()).toEqual(before);
    });
  });
});
