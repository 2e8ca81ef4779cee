import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { MikroORM } from '@mikro-orm/postgresql';
import { MIGRATIONS } from '../../migrations';
import { migrate, openOrm } from '../../src/database/orm';
import { createTestDatabase, dropTestDatabase, withClient } from '../support/database';

// A database that MikroORM 6 migrated (its migrations table, its records of what it applied,
// the schema it built) is upgraded in place: the current code applies only the migrations
// that came later and ends with the schema its entities describe.

const PREVIOUS_LAST = 'Migration20261128030000_idempotency_result_bytes';
const RECORDED = readFileSync(path.join(__dirname, 'fixtures', 'mikro-orm-6.6.16-to-Migration20261128030000.sql'), 'utf8');

let databaseUrl: string;
let orm: MikroORM | undefined;

beforeAll(async () => {
  databaseUrl = await createTestDatabase();
  await withClient(databaseUrl, (client) => client.query(RECORDED));
});
afterAll(async () => {
  await orm?.close(true);
  if (databaseUrl) await dropTestDatabase(databaseUrl);
});

it('applies the later migrations, and only those, to a database migrated by MikroORM 6', async () => {
  const names = MIGRATIONS.map((migration) => migration.name);
  const later = names.slice(names.indexOf(PREVIOUS_LAST) + 1);
  expect(later.length).toBeGreaterThan(0);

  orm = await openOrm({ clientUrl: databaseUrl });
  expect(await migrate(orm)).toEqual(later);
  expect((await orm.migrator.getExecuted()).map((migration) => migration.name)).toEqual(names);
  expect(await orm.migrator.getPending()).toEqual([]);
  expect((await orm.schema.getUpdateSchemaSQL({ wrap: false })).trim()).toBe('');
});
