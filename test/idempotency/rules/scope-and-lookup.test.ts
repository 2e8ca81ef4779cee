import { randomUUID } from 'node:crypto';
import type { GraphQLResponse } from '../../support/server';
import { codesOf, markersOf, newKey, RECORD, type RecordLookup, useRulesServers } from './support';

// Rules I2 and I11 of docs/idempotency.md (#i2-scope, #i11-lookup), observed over HTTP against the real server and database.

describe('idempotency rules', () => {
  const ctx = useRulesServers();
  const { sql, rowsOf, placeOrder, placed, mug } = ctx;

  describe('I2: records belong to a user and a key', () => {
    it('keeps the records of two users who use the same key apart, without a conflict', async () => {
      const key = newKey();

      const asAlice = await placed(mug(), key, { token: ctx.alice });
      const asBob = await placed(mug(), key, { token: ctx.bob });
      const aliceAgain = await placeOrder(mug(), key, { token: ctx.alice });
      const bobAgain = await placeOrder(mug(), key, { token: ctx.bob });

      const aliceOrder = asAlice.body.data!.createOrder.order.id;
      const bobOrder = asBob.body.data!.createOrder.order.id;
      expect(bobOrder).not.toBe(aliceOrder);
      expect(markersOf(asBob)).toEqual([expect.objectContaining({ key, replayed: false })]);
      expect(aliceAgain.body.data?.createOrder.order.id).toBe(aliceOrder);
      expect(bobAgain.body.data?.createOrder.order.id).toBe(bobOrder);
      expect((await rowsOf(key)).map((row) => row.user_id)).toEqual(['alice', 'bob']);
      expect(await sql('select user_id from orders where id = any($1::uuid[]) order by user_id', [[aliceOrder, bobOrder]])).toEqual([
        { user_id: 'alice' },
        { user_id: 'bob' },
      ]);
    });

    it("neither conflicts with nor reveals another user's record with the same key", async () => {
      const key = newKey();
      const first = await placed(mug(1), key, { token: ctx.alice });

      const asBob = await placed(mug(2), key, { token: ctx.bob });
      const bobsView = await ctx.server.gql<RecordLookup>(RECORD, { key }, { token: ctx.bob });
      const carolsView = await ctx.server.gql<RecordLookup>(RECORD, { key }, { token: ctx.carol });

      expect(asBob.body.data!.createOrder.order.lines[0]!.quantity).toBe(2);
      const bobsMarker = markersOf(asBob)![0]!;
      expect(bobsView.body.data?.idempotencyRecord).toEqual({
        key,
        operation: 'createOrder',
        outcome: 'SUCCEEDED',
        createdAt: bobsMarker.firstExecutedAt,
        expiresAt: bobsMarker.expiresAt,
      });
      expect(carolsView.body).toEqual({ data: { idempotencyRecord: null } });
      expect(JSON.stringify(asBob.body)).not.toContain(first.body.data!.createOrder.order.id);
    });
  });

  describe('I11: looking up a record', () => {
    async function lookup(key: string, token: string | undefined): Promise<GraphQLResponse<RecordLookup>> {
      return ctx.server.gql<RecordLookup>(RECORD, { key }, { token });
    }

    it("shows the viewer's own live record of a success and of a failure", async () => {
      const [succeeded, failed] = [newKey(), newKey()];
      const success = await placed(mug(), succeeded);
      const failure = await placeOrder({ lines: [{ productId: randomUUID(), quantity: 1 }] }, failed);

      const [forSuccess, forFailure] = [await lookup(succeeded, ctx.alice), await lookup(failed, ctx.alice)];

      const [successMarker, failureMarker] = [markersOf(success)![0]!, markersOf(failure)![0]!];
      expect(forSuccess.body).toEqual({
        data: {
          idempotencyRecord: {
            key: succeeded,
            operation: 'createOrder',
            outcome: 'SUCCEEDED',
            createdAt: successMarker.firstExecutedAt,
            expiresAt: successMarker.expiresAt,
          },
        },
      });
      expect(forFailure.body.data?.idempotencyRecord).toEqual({
        key: failed,
        operation: 'createOrder',
        outcome: 'FAILED',
        createdAt: failureMarker.firstExecutedAt,
        expiresAt: failureMarker.expiresAt,
      });
    });

    it("returns null for another user's key and for an unknown key", async () => {
      const key = newKey();
      await placed(mug(), key);

      expect((await lookup(key, ctx.bob)).body).toEqual({ data: { idempotencyRecord: null } });
      expect((await lookup(newKey(), ctx.alice)).body).toEqual({ data: { idempotencyRecord: null } });
    });

    it('requires an authenticated user', async () => {
      const key = newKey();
      await placed(mug(), key);

      const response = await lookup(key, undefined);

      expect(response.body.data?.idempotencyRecord ?? null).toBeNull();
      expect(codesOf(response)).toEqual(['UNAUTHENTICATED']);
    });

    it('reports an expired record as expired, with the facts of its tombstone, and null once the tombstone ended', async () => {
      const key = newKey();
      const first = await placed(mug(), key);
      const query = `query Record($key: IdempotencyKey!) {
        idempotencyRecord(key: $key) { key operation outcome createdAt expiresAt forgottenAt expired resources { type id } }
      }`;
      const look = async () => (await ctx.server.gql<RecordLookup>(query, { key }, { token: ctx.alice })).body;
      const marker = markersOf(first)![0]!;
      const facts = {
        key,
        operation: 'createOrder',
        outcome: 'SUCCEEDED',
        createdAt: marker.firstExecutedAt,
        forgottenAt: marker.forgottenAt,
        resources: [{ type: 'Order', id: first.body.data!.createOrder.order.id }],
      };
      expect(await look()).toEqual({ data: { idempotencyRecord: { ...facts, expiresAt: marker.expiresAt, expired: false } } });

      const [{ expires_at: expiredAt }] = (await sql<{ expires_at: Date }>(
        "update idempotency_records set expires_at = now() - interval '1 second' where key = $1 returning expires_at",
        [key],
      )) as [{ expires_at: Date }];
      expect(await look()).toEqual({ data: { idempotencyRecord: { ...facts, expiresAt: expiredAt.toISOString(), expired: true } } });

      await sql("update idempotency_records set forgotten_at = now() - interval '1 second' where key = $1", [key]);
      expect(await look()).toEqual({ data: { idempotencyRecord: null } });
    });

    it('answers IDEMPOTENCY_KEY_INVALID for a malformed key', async () => {
      expect(codesOf(await lookup('not a key', ctx.alice))).toEqual(['IDEMPOTENCY_KEY_INVALID']);
    });
  });
});
