import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { createTestDatabase, dropTestDatabase } from '../support/database';

const MAIN = path.join(__dirname, '../../dist/src/main.js');

describe('npm start with a production configuration and the explorer on', () => {
  let databaseUrl: string;
  let child: ChildProcess | undefined;
  let stdout = '';

  beforeAll(async () => {
    databaseUrl = await createTestDatabase();
  });
  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((resolve) => child?.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    await dropTestDatabase(databaseUrl);
  });

  it('mints no token: neither the explorer page nor the output carries one', async () => {
    child = spawn(process.execPath, [MAIN], {
      env: {
        PATH: process.env.PATH ?? '',
        NODE_ENV: 'production',
        JWT_SECRET: 'production-secret-for-tests-0123456789abcd',
        GRAPHQL_EXPLORER: 'graphiql',
        DATABASE_URL: databaseUrl,
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const url = await new Promise<string>((resolve, reject) => {
      child?.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
        stdout += chunk;
        // Whole lines only: a chunk may end mid-line.
        const line = stdout
          .split('\n')
          .slice(0, -1)
          .find((entry) => entry.includes('"GraphQL API ready"'));
        const found = line ? (JSON.parse(line) as { url?: string }).url : undefined;
        if (found) resolve(found);
      });
      child?.once('exit', (code) => reject(new Error(`the server exited with ${code} before it was ready:\n${stdout}`)));
    });

    const page = await (await fetch(url, { headers: { accept: 'text/html' } })).text();
    expect(page).toContain('id="graphiql"');
    expect(page).toContain('Idempotency-Key');
    // A JWT starts with the base64 of '{"alg"': eyJ.
    expect(page).not.toMatch(/Bearer|eyJ/);
    expect(stdout).not.toMatch(/eyJ|Development token/);
  });
});
