import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { MIGRATIONS } from '../migrations';
import { buildBaseSchema, printSdl } from '../src/graphql/schema';
import { startTestServer, type TestServer } from './support/server';

const ROOT = path.resolve(__dirname, '..');

/** Describes the first line where two texts differ, for a readable failure. */
function firstDifference(committed: string, emitted: string): string {
  const a = committed.split('\n');
  const b = emitted.split('\n');
  const line = a.findIndex((text, index) => text !== b[index]);
  const at = line === -1 ? a.length : line;
  return `first difference at line ${at + 1}:\n  committed: ${JSON.stringify(a[at])}\n  from code: ${JSON.stringify(b[at])}`;
}

describe('schema/schema.graphql', () => {
  it('matches the SDL printed from the code-first schema', () => {
    const committed = readFileSync(path.join(ROOT, 'schema', 'schema.graphql'), 'utf8');
    const emitted = printSdl(buildBaseSchema());
    if (committed !== emitted) {
      throw new Error(
        `schema/schema.graphql is stale: run \`npm run schema:emit\` and commit the result (${firstDifference(committed, emitted)})`,
      );
    }
    expect(committed).toBe(emitted);
  });
});

describe('migrations', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ seed: false });
  });
  afterAll(async () => {
    await server.close();
  });

  it('leave no difference between the entities and the migrated database', async () => {
    const diff = (await server.orm.schema.getUpdateSchemaSQL({ wrap: false })).trim();
    if (diff !== '') {
      throw new Error(`entities and migrations disagree; a migration is missing (npm run migration:create) or wrong:\n${diff}`);
    }
    expect(diff).toBe('');
  });

  it('are all applied by the server at start, none left pending', async () => {
    const migrator = server.orm.migrator;
    expect(await migrator.getPending()).toEqual([]);
    const executed = (await migrator.getExecuted()).map((migration) => migration.name);
    expect(executed).toEqual(MIGRATIONS.map((migration) => migration.name));
  });
});

describe('migrations/index.ts', () => {
  const files = readdirSync(path.join(ROOT, 'migrations'))
    .filter((file) => /^Migration.*\.ts$/.test(file) && !file.endsWith('.d.ts'))
    .map((file) => file.replace(/\.ts$/, ''))
    .sort();
  const listed = MIGRATIONS.map((migration) => migration.name);

  it('finds at least one migration file', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  it('lists every migrations/Migration*.ts file', () => {
    const missing = files.filter((file) => !listed.includes(file));
    if (missing.length > 0) throw new Error(`add these migrations to MIGRATIONS in migrations/index.ts: ${missing.join(', ')}`);
    expect(missing).toEqual([]);
  });

  it('lists no migration without a file, none twice, in timestamp order', () => {
    expect(listed.filter((name) => !files.includes(name))).toEqual([]);
    expect(new Set(listed).size).toBe(listed.length);
    expect(listed).toEqual([...listed].sort());
  });

  it('pairs each name with the class of the same name', () => {
    for (const migration of MIGRATIONS) {
      expect(migration.class.name).toBe(migration.name);
    }
  });
});
