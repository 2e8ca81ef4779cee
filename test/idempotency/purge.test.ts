import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { createIdempotency } from '../../src/idempotency';
import { withClient } from '../support/database';
import { startTestServer, type TestServer } from '../support/server';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');

/**
 * Inserts, for one user, `expired` records past their expiry without a tombstone, `tombstoned`
 * ones past their expiry with a tombstone for another day, and `live` ones.
 */
async function insertRecords(server: TestServer, user: string, expired: number, live: number, tombstoned = 0): Promise<void> {
  await withClient(server.databaseUrl, (client) =>
    client.query(
      `insert into idempotency_records (user_id, key, operation, fingerprint, outcome, result, created_at, expires_at, forgotten_at)
       select $1, 'k' || n, 'createOrder', sha256(n::text::bytea), 'SUCCEEDED', convert_to('{"kind":"payload","payload":null}', 'UTF8'), now() - interval '2 days',
              case when n <= $2::int + $4::int then now() - interval '1 hour' else now() + interval '1 hour' end,
              case when n > $2::int then now() + interval '1 day' end
         from generate_series(1, $2::int + $3::int + $4::int) as n`,
      [user, expired, live, tombstoned],
    ),
  );
}

/** Rows of `user`: expired ones still holding their result, tombstones, live records. */
async function recordsOf(server: TestServer, user: string): Promise<{ expired: number; tombstones: number; live: number }> {
  return withClient(server.databaseUrl, async (client) => {
    const { rows } = await client.query(
      `select count(*) filter (where expires_at <= now() and result is not null) as expired,
              count(*) filter (where result is null) as tombstones,
              count(*) filter (where expires_at > now()) as live
         from idempotency_records where user_id = $1`,
      [user],
    );
    return { expired: Number(rows[0].expired), tombstones: Number(rows[0].tombstones), live: Number(rows[0].live) };
  });
}

describe('purging expired idempotency records', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ seed: false, env: { IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0' } });
  });
  afterAll(async () => {
    await server.close();
  });

  it('npm run idempotency:purge deletes the expired records, turns those with a tombstone into tombstones, keeps the live ones and prints how many', async () => {
    await insertRecords(server, 'cli-user', 12_000, 30, 7);
    // As a scheduler in the production image runs it: from dist/, with no compiler and no JWT_SECRET.
    const { stdout } = await run('npm', ['run', '--silent', 'idempotency:purge'], {
      cwd: ROOT,
      env: {
        PATH: path.dirname(process.execPath) + path.delimiter + (process.env.PATH ?? ''),
        NODE_ENV: 'production',
        DATABASE_URL: server.databaseUrl,
        LOG_LEVEL: 'warn',
      },
      timeout: 30_000,
    });
    expect(stdout).toMatch(/^purged idempotency records: 12000 deleted, 7 expired turned into tombstones, in \d+ ms\n$/);
    expect(await recordsOf(server, 'cli-user')).toEqual({ expired: 0, tombstones: 7, live: 30 });
  });

  it('drops the results of records that expired after the newest tombstone with HOT updates, writing no index entry', async () => {
    // Tombstones of two days ago, then records of a two-line order's size that expired an hour ago.
    await withClient(server.databaseUrl, (client) =>
      client.query(
        `insert into idempotency_records (user_id, key, operation, fingerprint, outcome, result, created_at, expires_at, forgotten_at)
         select 'hot-user', 'k' || n, 'createOrder', sha256(n::text::bytea), 'SUCCEEDED',
                case when n > 200 then convert_to('{"kind":"payload","payload":"' || repeat('x', 700) || '"}', 'UTF8') end,
                now() - interval '3 days', now() - case when n > 200 then interval '1 hour' else interval '2 days' end, now() + interval '1 day'
           from generate_series(1, 500) as n`,
      ),
    );
    const updates = () =>
      withClient(server.databaseUrl, async (client) => {
        const { rows } = await client.query(
          `select n_tup_upd as updated, n_tup_hot_upd as hot from pg_stat_user_tables where relname = 'idempotency_records'`,
        );
        return { updated: Number(rows[0].updated), hot: Number(rows[0].hot) };
      });
    const before = await updates();
    expect(await createIdempotency().purge(server.orm)).toEqual({ deleted: 0, tombstoned: 300 });
    expect(await recordsOf(server, 'hot-user')).toEqual({ expired: 0, tombstones: 500, live: 0 });
    // The purge's connections report their counts once idle, within seconds.
    const deadline = Date.now() + 30_000;
    let after = await updates();
    while (after.updated - before.updated < 300 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      after = await updates();
    }
    expect({ updated: after.updated - before.updated, hot: after.hot - before.hot }).toEqual({ updated: 300, hot: 300 });
  });

  it('deletes a record whose tombstone ended without first dropping its result, as the two passes take turns', async () => {
    // One second apart: odd rows' tombstones ended 30 s after their expiry, so the delete pass
    // (ordered by that end) trails the tombstone pass (ordered by expiry) over the same rows.
    await withClient(server.databaseUrl, (client) =>
      client.query(
        `insert into idempotency_records (user_id, key, operation, fingerprint, outcome, result, created_at, expires_at, forgotten_at)
         select 'turns-user', 'k' || n, 'createOrder', sha256(n::text::bytea), 'SUCCEEDED', convert_to('{"kind":"payload","payload":null}', 'UTF8'),
                now() - interval '2 days', now() - interval '1 hour' + make_interval(secs => n),
                now() - interval '1 hour' + make_interval(secs => n) + case when n % 2 = 1 then interval '30 seconds' else interval '1 day' end
           from generate_series(1, 40) as n`,
      ),
    );
    expect(await createIdempotency().purge(server.orm, { batchSize: 2, pauseRatio: 0 })).toEqual({ deleted: 20, tombstoned: 20 });
    expect(await recordsOf(server, 'turns-user')).toEqual({ expired: 0, tombstones: 20, live: 0 });
  });

  it('runs in the background every interval and reports each purge', async () => {
    await insertRecords(server, 'job-user', 50, 5);
    const purged: number[] = [];
    const stop = createIdempotency().startPurgeJob(
      server.orm,
      1,
      ({ deleted }) => purged.push(deleted),
      (error) => {
        throw error;
      },
    );
    try {
      const deadline = Date.now() + 10_000;
      while ((await recordsOf(server, 'job-user')).expired > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } finally {
      await stop();
    }
    expect(await recordsOf(server, 'job-user')).toEqual({ expired: 0, tombstones: 0, live: 5 });
    expect(purged.reduce((sum, deleted) => sum + deleted, 0)).toBeGreaterThanOrEqual(50);
  });

  it('does nothing when the interval is 0', async () => {
    await insertRecords(server, 'idle-user', 3, 0);
    const stop = createIdempotency().startPurgeJob(
      server.orm,
      0,
      () => {},
      () => {},
    );
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    await stop();
    expect(await recordsOf(server, 'idle-user')).toEqual({ expired: 3, tombstones: 0, live: 0 });
  });
});
