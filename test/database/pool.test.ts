import type { MikroORM } from '@mikro-orm/postgresql';
import { openOrm } from '../../src/database/orm';
import { isTransientDatabaseError } from '../../src/database/transient';
import { createTestDatabase, dropTestDatabase, withClient } from '../support/database';

// The ORM's connection pool, with a single connection so that one held or lost connection
// decides what the next request gets.

let databaseUrl: string;
let orm: MikroORM;

beforeAll(async () => {
  databaseUrl = await createTestDatabase();
  orm = await openOrm({ clientUrl: databaseUrl, poolSize: 1 });
});
afterAll(async () => {
  await orm?.close(true);
  if (databaseUrl) await dropTestDatabase(databaseUrl);
});

/** The error that settles `work`, or undefined. */
function errorOf(work: Promise<unknown>): Promise<unknown> {
  return work.then(
    () => undefined,
    (error: unknown) => error,
  );
}

it('counts waiting past the timeout for a pooled connection as transient', async () => {
  let release = () => {};
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  let holding = () => {};
  const held = new Promise<void>((resolve) => {
    holding = resolve;
  });
  // The pool's only connection stays in this transaction until released.
  const holder = orm.em.fork().transactional(async (em) => {
    await em.execute('select 1');
    holding();
    await released;
  });
  await held;
  const error = await errorOf(orm.em.fork().execute('select 1'));
  release();
  await holder;
  expect(error).toBeInstanceOf(Error);
  expect(isTransientDatabaseError(error)).toBe(true);
});

it('gets back the connection of a transaction whose session the server terminated', async () => {
  const error = await errorOf(
    orm.em.fork().transactional(async (em) => {
      const [session] = await em.execute<{ pid: number }[]>('select pg_backend_pid() as pid');
      await withClient(databaseUrl, async (admin) => {
        await admin.query('select pg_terminate_backend($1)', [session?.pid]);
        // Wait until the session is gone, so the next statement meets a closed connection.
        while ((await admin.query('select 1 from pg_stat_activity where pid = $1', [session?.pid])).rowCount) {}
      });
      await em.execute('select 1');
    }),
  );
  expect(isTransientDatabaseError(error)).toBe(true);
  // A connection left checked out would make this wait for the pool's timeout and fail.
  expect(await orm.em.fork().execute('select 1 as one')).toEqual([{ one: 1 }]);
});
