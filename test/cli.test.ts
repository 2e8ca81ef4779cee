import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { verifyToken } from '../src/auth/token';
import { DEVELOPMENT_JWT_SECRET } from '../src/config';
import { createTestDatabase, dropTestDatabase, withClient } from './support/database';

// The CLIs run from the built output: the production image has no compiler (its dev
// dependencies are pruned), and a rebuild before each call made minting a token take seconds.

const ROOT = path.resolve(__dirname, '..');
const run = promisify(execFile);
const SCRIPTS = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;

function npm(args: string[], env: Record<string, string> = {}) {
  return run('npm', ['run', '--silent', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    timeout: 60_000,
  });
}

/** The modification time of a compiled file: a build rewrites it. */
function builtAt(file: string): number {
  return statSync(path.join(ROOT, 'dist', file)).mtimeMs;
}

describe('command-line tools', () => {
  it.each(['token', 'schema:emit', 'schema:diff', 'migration:create', 'migration:up'])('%s does not compile first', (script) => {
    expect(SCRIPTS[script]).toBeDefined();
    expect(SCRIPTS[script]).not.toMatch(/\b(build|tsc|ts-node)\b/);
  });

  it('mints a token the server accepts, from the built output, without rebuilding it', async () => {
    const before = builtAt('src/auth/token.cli.js');
    const { stdout } = await npm(['token', '--', 'alice', '--admin']);
    expect(builtAt('src/auth/token.cli.js')).toBe(before);
    const viewer = await verifyToken(stdout.trim(), { secret: DEVELOPMENT_JWT_SECRET, maxLifetimeSeconds: 2_592_000 });
    expect(viewer).toEqual({ id: 'alice', roles: ['admin'] });
  });

  it('prints its usage for --help instead of minting a token for the user --help', async () => {
    const { stdout, stderr } = await npm(['token', '--', '--help']);
    expect(stdout).toMatch(/^usage: npm run token -- <sub>/);
    expect(stdout).toMatch(/--expires/);
    expect(stdout).not.toMatch(/^eyJ/m);
    expect(stderr).toBe('');
  });

  it('refuses a lifetime longer than JWT_MAX_LIFETIME_SECONDS, which the server would refuse', async () => {
    const failure = await npm(['token', '--', 'alice', '--expires', '2h'], { JWT_MAX_LIFETIME_SECONDS: '3600' }).then(
      () => undefined,
      (error: { code?: number; stderr?: string }) => error,
    );
    expect(failure?.code).toBe(2);
    expect(failure?.stderr).toMatch(/longer than JWT_MAX_LIFETIME_SECONDS \(3600 s\)/);
  });

  it('applies the migrations with migration:up from the built output', async () => {
    const databaseUrl = await createTestDatabase();
    try {
      const before = builtAt('src/database/orm.cli-config.js');
      await npm(['migration:up'], { DATABASE_URL: databaseUrl });
      expect(builtAt('src/database/orm.cli-config.js')).toBe(before);
      const tables = await withClient(databaseUrl, async (client) => {
        const { rows } = await client.query<{ name: string }>(
          "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('orders', 'products')",
        );
        return rows.map((row) => row.name).sort();
      });
      expect(tables).toEqual(['orders', 'products']);
    } finally {
      await dropTestDatabase(databaseUrl);
    }
  });
});
