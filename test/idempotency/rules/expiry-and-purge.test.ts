import { randomBytes } from 'node:crypto';
import { createIdempotency } from '../../../src/idempotency';
import { PostgresRecordStore } from '../../../src/idempotency/postgres.store';
import { withClient } from '../../support/database';
import { type GraphQLResponse, startTestServer, type TestServer } from '../../support/server';
import {
  CREATE_ORDER_ID_ONLY,
  type Marker,
  markersOf,
  newKey,
  type Placed,
  RECORD,
  type RecordLookup,
  sleep,
  useRulesServers,
} from './support';

// Rule I10 of docs/idempotency.md (#i10-expiry), observed over HTTP against the real server and database.

describe('idempotency rules', () => {
  const ctx = useRulesServers();
  const { sql, countOrders, rowsOf, send } = ctx;

  describe('I10: expiry', () => {
    it('purges exactly the expired records, in batches, and reports how many', async () => {
      const user = `purge-${randomBytes(4).toString('hex')}`;
      await sql(
        `insert into idempotency_records (user_id, key, operation, fingerprint, outcome, result, created_at, expires_at)
         select $1, 'expired-' || n, 'createOrder', sha256(n::text::bytea), 'SUCCEEDED', convert_to('{"kind":"payload","payload":null}', 'UTF8'),
                now() - interval '2 days', now() - make_interval(mins => n)
           from generate_series(1, 5) as n
         union all
         select $1, 'live-' || n, 'createOrder', sha256(n::text::bytea), 'SUCCEEDED', convert_to('{"kind":"payload","payload":null}', 'UTF8'),
                now(), now() + make_interval(mins => n)
           from generate_series(1, 3) as n`,
        [user],
      );
      // Rows inserted without forgotten_at have no tombstone: they are due when they expire.
      const due =
        'select count(*) filter (where coalesce(forgotten_at, expires_at) <= now())::int as expired, count(*)::int as total from idempotency_records';
      const [counts] = await sql<{ expired: number; total: number }>(due);
      expect(counts!.expired).toBeGreaterThanOrEqual(5);

      const { deleted } = await createIdempotency().purge(ctx.server.orm, { batchSize: 2 });

      expect(deleted).toBe(counts!.expired);
      const [after] = await sql<{ expired: number; total: number }>(due);
      expect(after).toEqual({ expired: 0, total: counts!.total - deleted });
      expect(await sql('select key from idempotency_records where user_id = $1 order by key', [user])).toEqual([
        { key: 'live-1' },
        { key: 'live-2' },
        { key: 'live-3' },
      ]);
      expect((await createIdempotency().purge(ctx.server.orm)).deleted).toBe(0);
    });

    it('purges every expired record when batches end inside a run of equal expiries, microseconds apart', async () => {
      const user = `purge-ties-${randomBytes(4).toString('hex')}`;
      // 9 rows in three expiries one microsecond apart (three rows each), below millisecond precision.
      await sql(
        `insert into idempotency_records (user_id, key, operation, fingerprint, outcome, result, created_at, expires_at)
         select $1, 'tie-' || n, 'createOrder', sha256(n::text::bytea), 'SUCCEEDED', convert_to('{"kind":"payload","payload":null}', 'UTF8'),
                now() - interval '2 days', date_trunc('second', now()) - interval '1 hour' + (n % 3) * interval '1 microsecond'
           from generate_series(1, 9) as n`,
        [user],
      );
      const [before] = await sql<{ expired: number }>('select count(*)::int as expired from idempotency_records where expires_at <= now()');

      const { deleted } = await createIdempotency().purge(ctx.server.orm, { batchSize: 2 });

      expect(deleted).toBe(before!.expired);
      expect(await sql('select key from idempotency_records where user_id = $1', [user])).toEqual([]);
      expect(await sql('select 1 from idempotency_records where expires_at <= now()')).toEqual([]);
    });

    /**
     * Records `old-1` ... `old-<count>` of `user`, expired on 2000-01-02 one second apart: older
     * than anything else in the table, so they are the first a purge deletes.
     */
    async function insertOldRecords(user: string, count: number): Promise<void> {
      await sql(
        `insert into idempotency_records (user_id, key, operation, fingerprint, outcome, result, created_at, expires_at)
         select $1, 'old-' || n, 'createOrder', sha256(n::text::bytea), 'SUCCEEDED', convert_to('{"kind":"payload","payload":null}', 'UTF8'),
                timestamptz '2000-01-01 00:00:00Z', timestamptz '2000-01-02 00:00:00Z' + n * interval '1 second'
           from generate_series(1, $2::int) as n`,
        [user, count],
      );
    }

    it('deletes one batch of the oldest expired records and continues where it ended', async () => {
      const user = `purge-batch-${randomBytes(4).toString('hex')}`;
      await insertOldRecords(user, 5);
      const store = new PostgresRecordStore();
      const keys = async () =>
        (await sql<{ key: string }>('select key from idempotency_records where user_id = $1 order by key', [user])).map((row) => row.key);

      const first = await store.purge(ctx.server.orm.em.fork(), 2, null);
      expect(first).toEqual({ count: 2, last: new Date('2000-01-02T00:00:02Z') });
      expect(await keys()).toEqual(['old-3', 'old-4', 'old-5']);

      const second = await store.purge(ctx.server.orm.em.fork(), 2, first.last);
      expect(second).toEqual({ count: 2, last: new Date('2000-01-02T00:00:04Z') });
      expect(await keys()).toEqual(['old-5']);
      await expect(store.purge(ctx.server.orm.em.fork(), 0, null)).rejects.toThrow(RangeError);
    });

    it('waits for a transaction replacing an expired record and keeps the record it made live', async () => {
      const user = `purge-wait-${randomBytes(4).toString('hex')}`;
      await insertOldRecords(user, 2);
      await withClient(ctx.server.databaseUrl, async (client) => {
        // What a re-execution of key old-1 does to its expired row, left uncommitted.
        await client.query('begin');
        await client.query(`update idempotency_records set expires_at = now() + interval '1 hour' where user_id = $1 and key = 'old-1'`, [
          user,
        ]);
        let settled = false;
        const purge = createIdempotency()
          .purge(ctx.server.orm, { batchSize: 100 })
          .finally(() => {
            settled = true;
          });
        await sleep(300);
        expect(settled).toBe(false);
        await client.query('commit');
        await purge;
      });
      expect(await sql('select key from idempotency_records where user_id = $1', [user])).toEqual([{ key: 'old-1' }]);
    });

    describe('with IDEMPOTENCY_TTL_SECONDS=1 and tombstones off (IDEMPOTENCY_TOMBSTONE_SECONDS=0)', () => {
      let shortLived: TestServer;
      let token: string;

      beforeAll(async () => {
        shortLived = await startTestServer({ env: { IDEMPOTENCY_TTL_SECONDS: '1', IDEMPOTENCY_TOMBSTONE_SECONDS: '0' } });
        token = await shortLived.token('alice');
      });

      afterAll(async () => {
        await shortLived?.close();
      });

      async function placeShort(quantity: number, key: string): Promise<GraphQLResponse<Placed>> {
        const [row] = await sql<{ id: string }>("select id::text from products where sku = 'MUG-001'", [], shortLived);
        return send<Placed>(CREATE_ORDER_ID_ONLY, { input: { lines: [{ productId: row!.id, quantity }] }, key }, { token, on: shortLived });
      }

      async function waitUntilExpired(marker: Marker): Promise<void> {
        const wait = Date.parse(marker.expiresAt) + 300 - Date.now();
        if (wait > 0) await sleep(wait);
      }

      it('executes a key again once its record expired, bypassing the in-memory cache', async () => {
        const key = newKey();
        const first = await placeShort(1, key);
        const replay = await placeShort(1, key);
        const marker = markersOf(first)![0]!;
        expect(Date.parse(marker.expiresAt) - Date.parse(marker.firstExecutedAt)).toBe(1000);
        expect(markersOf(replay)).toEqual([{ ...marker, replayed: true }]);
        expect(replay.body.data).toEqual(first.body.data);
        const ordersBefore = await countOrders(shortLived);

        await waitUntilExpired(marker);
        const lookup = await shortLived.gql<RecordLookup>(RECORD, { key }, { token });
        const again = await placeShort(1, key);

        expect(lookup.body).toEqual({ data: { idempotencyRecord: null } });
        expect(again.body.errors).toBeUndefined();
        expect(again.body.data!.createOrder.order.id).not.toBe(first.body.data!.createOrder.order.id);
        expect(markersOf(again)).toEqual([expect.objectContaining({ key, replayed: false })]);
        expect(Date.parse(markersOf(again)![0]!.firstExecutedAt)).toBeGreaterThan(Date.parse(marker.firstExecutedAt));
        expect(await countOrders(shortLived)).toBe(ordersBefore + 1);
        expect(await rowsOf(key, shortLived)).toHaveLength(1);
      });

      it('accepts other arguments with a key whose record expired', async () => {
        const key = newKey();
        const first = await placeShort(1, key);
        expect(first.body.errors).toBeUndefined();

        await waitUntilExpired(markersOf(first)![0]!);
        const other = await placeShort(2, key);

        expect(other.body.errors).toBeUndefined();
        expect(markersOf(other)).toEqual([expect.objectContaining({ key, replayed: false })]);
        expect(other.body.data!.createOrder.order.id).not.toBe(first.body.data!.createOrder.order.id);
      });
    });
  });
});
