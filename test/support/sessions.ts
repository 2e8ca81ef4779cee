import type { Client } from 'pg';

const POLL_MS = 10;
const LIMIT_MS = 15_000;

/**
 * Resolves once at least `count` sessions of the client's database, other than the client's
 * own, wait for a lock (polled in pg_stat_activity): a request has reached the lock a test holds.
 */
export async function untilLockWaiters(client: Client, count = 1): Promise<void> {
  const deadline = Date.now() + LIMIT_MS;
  for (;;) {
    const { rows } = await client.query<{ waiting: number }>(
      `select count(*)::int as waiting from pg_stat_activity
        where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`,
    );
    if (rows[0]!.waiting >= count) return;
    if (Date.now() > deadline) throw new Error(`${rows[0]!.waiting} of ${count} sessions waited for a lock within ${LIMIT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
