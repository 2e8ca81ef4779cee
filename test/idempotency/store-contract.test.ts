import { createHash } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import { PostgresRecordStore } from '../../src/idempotency/postgres.store';
import { type NewRecord, Outcome, type PurgedBatch, type RecordStore } from '../../src/idempotency/store';
import { withClient } from '../support/database';
import { startTestServer, type TestServer } from '../support/server';
import { MemoryRecordStore, type MemoryTx } from './memory-store';

/** What the contract suite needs of an implementation besides the store itself. */
interface Harness<Db> {
  readonly store: RecordStore<Db>;
  db(): Db;
  /** Moves the record of (scope, key) back in time until it expired an hour ago; its tombstone keeps its length. */
  expire(scope: string, key: string): Promise<void>;
  /** Makes the tombstone of (scope, key) end, as more time passing would. */
  forget(scope: string, key: string): Promise<void>;
  /** Resolves once some transaction waits for a lock (the store's own notion of it). */
  untilSomeoneWaits(): Promise<void>;
}

function record(scope: string, key: string, overrides: Partial<NewRecord> = {}): NewRecord {
  return {
    scope,
    key,
    operation: 'createOrder',
    fingerprint: createHash('sha256').update(key).digest(),
    outcome: Outcome.Succeeded,
    format: 1,
    keyId: null,
    result: Buffer.from('{"kind":"payload","payload":1}'),
    resources: [{ type: 'Order', id: `order-of-${key}` }],
    ttlSeconds: 3600,
    tombstoneSeconds: 7200,
    ...overrides,
  };
}

/** A gate a test opens when it decides to. */
function gate(): { opened: Promise<void>; open(): void } {
  const controller = new AbortController();
  const opened = new Promise<void>((resolve) => controller.signal.addEventListener('abort', () => resolve()));
  return { opened, open: () => controller.abort() };
}

function contract<Db>(name: string, setUp: () => Promise<Harness<Db>>, tearDown: () => Promise<void>) {
  describe(`record store contract: ${name}`, () => {
    let h: Harness<Db>;
    beforeAll(async () => {
      h = await setUp();
    });
    afterAll(tearDown);

    const liveRecord = async (scope: string, key: string) => {
      const found = await h.store.find(h.db(), scope, key);
      if (found?.kind !== 'live') throw new Error(`no live record of ${key}: ${JSON.stringify(found)}`);
      return found.record;
    };

    const commitWrite = (rec: NewRecord) =>
      h.store.transaction(h.db(), 5_000, async (tx) => {
        const written = await h.store.write(tx, rec);
        return { commit: written.kind === 'written', value: written };
      });

    it('finds nothing for an unknown key, and the committed record once written', async () => {
      expect(await h.store.find(h.db(), 'u1', 'k1')).toBeNull();
      const written = await commitWrite(record('u1', 'k1'));
      expect(written).toMatchObject({ kind: 'written', replacedExpired: false });
      const found = await liveRecord('u1', 'k1');
      expect(found).toMatchObject({ scope: 'u1', key: 'k1', operation: 'createOrder', outcome: 'SUCCEEDED', format: 1, keyId: null });
      expect(found.result.toString()).toBe('{"kind":"payload","payload":1}');
      expect(found.resources).toEqual([{ type: 'Order', id: 'order-of-k1' }]);
      expect(found.fingerprint.equals(createHash('sha256').update('k1').digest())).toBe(true);
      expect(found.expiresAt.getTime() - found.createdAt.getTime()).toBe(3_600_000);
      expect(found.forgottenAt.getTime() - found.expiresAt.getTime()).toBe(7_200_000);
      expect(await h.store.find(h.db(), 'u2', 'k1')).toBeNull();
    });

    it('reports a key held by a live record as taken and leaves the record as it was', async () => {
      await commitWrite(record('u1', 'taken'));
      expect(await commitWrite(record('u1', 'taken', { operation: 'cancelOrder' }))).toEqual({ kind: 'taken' });
      expect((await liveRecord('u1', 'taken')).operation).toBe('createOrder');
    });

    it('finds an expired record as its tombstone, without the result, and keeps the key taken', async () => {
      await commitWrite(record('u1', 'late'));
      await h.expire('u1', 'late');
      const found = await h.store.find(h.db(), 'u1', 'late');
      expect(found).toMatchObject({
        kind: 'expired',
        tombstone: {
          scope: 'u1',
          key: 'late',
          operation: 'createOrder',
          outcome: 'SUCCEEDED',
          resources: [{ type: 'Order', id: 'order-of-late' }],
        },
      });
      expect(found).not.toHaveProperty('tombstone.result');
      expect(await commitWrite(record('u1', 'late', { operation: 'cancelOrder' }))).toEqual({ kind: 'taken' });
    });

    it('replaces a record whose tombstone ended, and finds nothing of it', async () => {
      await commitWrite(record('u1', 'old'));
      await h.expire('u1', 'old');
      await h.forget('u1', 'old');
      expect(await h.store.find(h.db(), 'u1', 'old')).toBeNull();
      expect(await commitWrite(record('u1', 'old', { operation: 'cancelOrder' }))).toMatchObject({
        kind: 'written',
        replacedExpired: true,
      });
      expect((await liveRecord('u1', 'old')).operation).toBe('cancelOrder');
    });

    it('keeps no tombstone when tombstoneSeconds is 0: the key is unused at expiry', async () => {
      const written = await commitWrite(record('u1', 'brief', { tombstoneSeconds: 0 }));
      expect(written.kind === 'written' && written.record.forgottenAt.getTime() - written.record.expiresAt.getTime()).toBe(0);
      await h.expire('u1', 'brief');
      expect(await h.store.find(h.db(), 'u1', 'brief')).toBeNull();
    });

    it('keeps nothing of a transaction rolled back, and rolls back on an error', async () => {
      const value = await h.store.transaction(h.db(), 5_000, async (tx) => ({
        commit: false,
        value: await h.store.write(tx, record('u1', 'no')),
      }));
      expect(value.kind).toBe('written');
      await expect(
        h.store.transaction(h.db(), 5_000, async (tx) => {
          await h.store.write(tx, record('u1', 'no'));
          throw new Error('the mutation failed');
        }),
      ).rejects.toThrow('the mutation failed');
      expect(await h.store.find(h.db(), 'u1', 'no')).toBeNull();
    });

    it('makes a writer wait for another open transaction with the key, then reports the key taken', async () => {
      const [release, holding] = [gate(), gate()];
      const holder = h.store.transaction(h.db(), 5_000, async (tx) => {
        await h.store.write(tx, record('u1', 'held'));
        holding.open();
        await release.opened;
        return { commit: true, value: undefined };
      });
      // The waiter starts once the holder has written, so the holder is the one it waits for.
      await holding.opened;
      const waiter = h.store.transaction(h.db(), 60_000, async (tx) => ({
        commit: false,
        value: await h.store.write(tx, record('u1', 'held')),
      }));
      await h.untilSomeoneWaits();
      release.open();
      await holder;
      expect(await waiter).toEqual({ kind: 'taken' });
    });

    it('reports busy when the other transaction holds the key past the wait, storing nothing', async () => {
      const [release, holding] = [gate(), gate()];
      const holder = h.store.transaction(h.db(), 5_000, async (tx) => {
        await h.store.write(tx, record('u1', 'busy'));
        holding.open();
        await release.opened;
        return { commit: false, value: undefined };
      });
      await holding.opened;
      const waiter = await h.store.transaction(h.db(), 200, async (tx) => {
        const written = await h.store.write(tx, record('u1', 'busy', { operation: 'cancelOrder' }));
        return { commit: written.kind === 'written', value: written };
      });
      release.open();
      await holder;
      expect(waiter).toEqual({ kind: 'busy' });
      expect(await h.store.find(h.db(), 'u1', 'busy')).toBeNull();
    });

    /** Runs `batch` until it finds nothing more, so that a test starts with nothing due. */
    const drain = async (batch: (db: Db, batchSize: number, from: Date | null) => Promise<PurgedBatch>) => {
      while ((await batch.call(h.store, h.db(), 100, null)).count > 0);
    };

    it('turns expired records into tombstones in batches, oldest first, keeping their answer to a late retry', async () => {
      await drain(h.store.tombstone);
      for (const key of ['t1', 't2', 't3']) {
        await commitWrite(record('tomb', key));
        await h.expire('tomb', key);
      }
      await commitWrite(record('tomb', 'live'));
      const first = await h.store.tombstone(h.db(), 2, null);
      expect(first.count).toBe(2);
      const second = await h.store.tombstone(h.db(), 2, first.last);
      expect(second.count).toBeGreaterThanOrEqual(1);
      expect((await h.store.tombstone(h.db(), 2, null)).count).toBe(0);
      expect(await h.store.find(h.db(), 'tomb', 't1')).toMatchObject({ kind: 'expired', tombstone: { key: 't1' } });
      expect((await liveRecord('tomb', 'live')).result.length).toBeGreaterThan(0);
      await expect(h.store.tombstone(h.db(), 0, null)).rejects.toThrow(RangeError);
    });

    it('leaves a row whose tombstone ended to the purge, which deletes it', async () => {
      await drain(h.store.tombstone);
      await drain(h.store.purge);
      await commitWrite(record('ended', 'e1'));
      await h.expire('ended', 'e1');
      await h.forget('ended', 'e1');
      expect((await h.store.tombstone(h.db(), 10, null)).count).toBe(0);
      expect((await h.store.purge(h.db(), 10, null)).count).toBe(1);
      expect(await h.store.find(h.db(), 'ended', 'e1')).toBeNull();
    });

    it('purges the rows whose tombstone ended in batches, oldest first, and keeps live records and tombstones', async () => {
      await drain(h.store.purge);
      for (const key of ['p1', 'p2', 'p3']) {
        await commitWrite(record('purge', key));
        await h.expire('purge', key);
        await h.forget('purge', key);
      }
      await commitWrite(record('purge', 'live'));
      await commitWrite(record('purge', 'tombstone'));
      await h.expire('purge', 'tombstone');
      const first = await h.store.purge(h.db(), 2, null);
      expect(first.count).toBe(2);
      const second = await h.store.purge(h.db(), 2, first.last);
      expect(second.count).toBeGreaterThanOrEqual(1);
      expect((await h.store.purge(h.db(), 2, null)).count).toBe(0);
      expect(await h.store.find(h.db(), 'purge', 'live')).toMatchObject({ kind: 'live' });
      expect(await h.store.find(h.db(), 'purge', 'tombstone')).toMatchObject({ kind: 'expired' });
      await expect(h.store.purge(h.db(), 0, null)).rejects.toThrow(RangeError);
    });
  });
}

let server: TestServer;
contract<EntityManager>(
  'PostgreSQL',
  async () => {
    server = await startTestServer({ seed: false, env: { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
    const sql = (text: string, params: unknown[] = []) => withClient(server.databaseUrl, (client) => client.query(text, params));
    return {
      store: new PostgresRecordStore(),
      db: () => server.orm.em.fork(),
      expire: async (scope, key) => {
        // Distinct expiries, in the order the records were expired, like time passing.
        await sql(
          `update idempotency_records
              set created_at = now() - interval '2 hours', expires_at = clock_timestamp() - interval '1 hour',
                  forgotten_at = clock_timestamp() - interval '1 hour' + (forgotten_at - expires_at)
            where user_id = $1 and key = $2`,
          [scope, key],
        );
      },
      forget: async (scope, key) => {
        await sql("update idempotency_records set forgotten_at = clock_timestamp() - interval '1 minute' where user_id = $1 and key = $2", [
          scope,
          key,
        ]);
      },
      untilSomeoneWaits: async () => {
        for (;;) {
          const { rows } = await sql('select count(*)::int as waiting from pg_locks where not granted');
          if (rows[0].waiting > 0) return;
          await new Promise((resolve) => setImmediate(resolve));
        }
      },
    };
  },
  async () => server.close(),
);

const memory = new MemoryRecordStore();
contract<MemoryTx | null>(
  'in memory',
  async () => ({
    store: memory,
    db: () => null,
    expire: async (scope, key) => {
      const id = `${scope}\u0000${key}`;
      const found = memory.records.get(id);
      if (!found) return;
      const expiresAt = Date.now() - 3_600_000 + memory.records.size;
      const tombstoneMs = found.forgottenAt.getTime() - found.expiresAt.getTime();
      memory.records.set(id, { ...found, expiresAt: new Date(expiresAt), forgottenAt: new Date(expiresAt + tombstoneMs) });
    },
    forget: async (scope, key) => {
      const id = `${scope}\u0000${key}`;
      const found = memory.records.get(id);
      if (found) memory.records.set(id, { ...found, forgottenAt: new Date(Date.now() - 60_000 + memory.records.size) });
    },
    untilSomeoneWaits: async () => {},
  }),
  async () => {},
);
