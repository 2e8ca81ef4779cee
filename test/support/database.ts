import { randomBytes } from 'node:crypto';
import { Client } from 'pg';

/** The server the run's global setup started (or DATABASE_URL), connected to as an administrator. */
export function adminUrl(): string {
  const url = process.env.TEST_ADMIN_URL;
  if (!url) throw new Error('TEST_ADMIN_URL is not set: run the tests through jest (global setup)');
  return url;
}

/** Runs statements on a database as the administrator. */
export async function withClient<T>(url: string, work: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Creates an empty database of its own for one test file and returns its URL. */
export async function createTestDatabase(): Promise<string> {
  const name = `test_${randomBytes(6).toString('hex')}`;
  await withClient(adminUrl(), (client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(adminUrl());
  url.pathname = `/${name}`;
  return url.toString();
}

/** Drops a database made by {@link createTestDatabase}, disconnecting anyone left on it. */
export async function dropTestDatabase(databaseUrl: string): Promise<void> {
  const name = new URL(databaseUrl).pathname.slice(1);
  await withClient(adminUrl(), (client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`));
}

/** The `count` column of one statement's first row, as a number (`select count(*) ...`). */
export function countRows(database: { readonly databaseUrl: string }, sql: string, params: unknown[] = []): Promise<number> {
  return withClient(database.databaseUrl, async (client) => Number((await client.query<{ count: string }>(sql, params)).rows[0]?.count));
}
