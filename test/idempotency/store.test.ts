import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';
import { openOrm } from '../../src/database/orm';
import { IdempotencyStore } from '../../src/idempotency';
import { withClient } from '../support/database';
import { startTestServer, type TestServer } from '../support/server';

/**
 * The store's read of a key as the mutation's transaction begins (`unlessLive`), on a migrated
 * database: what `work` is given, when it runs, and the transaction it runs in.
 */
describe('IdempotencyStore.unlessLive', () => {
  let server: TestServer;
  let orm: MikroORM;
  const store = new IdempotencyStore();

  beforeAll(async () => {
    server = await startTestServer({ seed: false, env: { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
    orm = await openOrm({ clientUrl: server.databaseUrl, poolSize: 2 });
    await withClient(server.databaseUrl, (client) =>
      client.query(
        `insert into idempotency_records (user_id, key, operation, fingerprint, outcome, result, created_at, expires_at)
         values ('store-user', 'live', 'createOrder', sha256('a'::bytea), 'SUCCEEDED', convert_to('{"kind":"payload","payload":1}', 'UTF8'), now(), now() + interval '1 hour'),
                ('store-user', 'expired', 'createOrder', sha256('b'::bytea), 'SUCCEEDED', convert_to('{"kind":"payload","payload":2}', 'UTF8'), now() - interval '2 hours', now() - interval '1 hour')`,
      ),
    );
  });
  afterAll(async () => {
    await orm.close(true);
    await server.close();
  });

  /** Whether the work's statements run in a transaction begun earlier, and whether it is a savepoint. */
  async function transactionOf(em: EntityManager): Promise<{ inTransaction: boolean; nested: boolean }> {
    const row = await em
      .getConnection()
      .execute<{ begun_earlier: boolean }>(
        'select statement_timestamp() <> transaction_timestamp() as begun_earlier',
        [],
        'get',
        em.getTransactionContext(),
      );
    const context = em.getTransactionContext<{ parentTransaction?: unknown }>();
    return { inTransaction: row.begun_earlier, nested: context?.parentTransaction !== undefined };
  }

  for (const inOuterTransaction of [false, true]) {
    const where = inOuterTransaction ? 'in a savepoint of a transaction already open' : 'in a transaction of its own';

    it(`returns a live record without running the work (${where})`, async () => {
      let ran = false;
      const run = (em: EntityManager) =>
        store.unlessLive(em, 'store-user', 'live', async () => {
          ran = true;
        });
      const outcome = inOuterTransaction ? await orm.em.fork().transactional(run) : await run(orm.em.fork());

      expect(outcome.live).toMatchObject({ key: 'live', live: true, result: Buffer.from('{"kind":"payload","payload":1}') });
      // Buffers of their own, not slices of the driver's shared pool, which a cached record would pin.
      for (const bytes of [outcome.live!.result, outcome.live!.fingerprint]) expect(bytes.buffer.byteLength).toBe(bytes.length);
      expect(ran).toBe(false);
    });

    it(`runs the work ${where}, given the expired record or null`, async () => {
      const seen: unknown[] = [];
      const run = async (em: EntityManager) => {
        for (const key of ['expired', `none-${inOuterTransaction}`]) {
          const outcome = await store.unlessLive(em, 'store-user', key, async (tx, expired) => {
            seen.push(expired && { key: expired.key, live: expired.live });
            return transactionOf(tx);
          });
          expect(outcome).toEqual({ live: null, value: { inTransaction: true, nested: inOuterTransaction } });
        }
      };
      if (inOuterTransaction) await orm.em.fork().transactional(run);
      else await run(orm.em.fork());

      expect(seen).toEqual([{ key: 'expired', live: false }, null]);
    });
  }
});
