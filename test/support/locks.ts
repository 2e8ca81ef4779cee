import { Client } from 'pg';
import { withClient } from './database';

const POLL_MS = 10;
const LIMIT_MS = 15_000;

const LOCK_WAITERS = `select count(*)::int as waiting from pg_stat_activity
  where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`;

/**
 * Holds row locks on the given products in a transaction of its own until released, so a
 * request that needs them waits. Releasing twice is harmless; a session ended under the lock
 * (a database shutdown, say) shows as a rejected release, never as an unhandled error.
 */
export async function lockProducts(databaseUrl: string, ids: string[]): Promise<() => Promise<void>> {
  const client = new Client({ connectionString: databaseUrl });
  client.on('error', () => {});
  await client.connect();
  await client.query('BEGIN');
  await client.query('SELECT id FROM products WHERE id = ANY($1) FOR UPDATE', [ids]);
  let released: Promise<void> | undefined;
  return () => {
    released ??= client.query('COMMIT').then(
      () => client.end(),
      async (error: unknown) => {
        await client.end();
        throw error;
      },
    );
    return released;
  };
}

/** How many sessions of the database, other than the asking one, wait for a lock right now. */
export function lockWaiters(databaseUrl: string): Promise<number> {
  return withClient(databaseUrl, async (client) => (await client.query<{ waiting: number }>(LOCK_WAITERS)).rows[0]!.waiting);
}

/**
 * Resolves once at least `count` sessions of the client's database, other than the client's
 * own, wait for a lock (polled in pg_stat_activity): a request has reached the lock a test holds.
 */
export async function untilLockWaiters(client: Client, count = 1): Promise<void> {
  const deadline = Date.now() + LIMIT_MS;
  for (;;) {
    const { rows } = await client.query<{ waiting: number }>(LOCK_WAITERS);
    if (rows[0]!.waiting >= count) return;
    if (Date.now() > deadline) throw new Error(`${rows[0]!.waiting} of ${count} sessions waited for a lock within ${LIMIT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** {@link untilLockWaiters} on a connection of its own to `databaseUrl`. */
export function untilLockWaitersOn(databaseUrl: string, count = 1): Promise<void> {
  return withClient(databaseUrl, (client) => untilLockWaiters(client, count));
}
