import { createTestDatabase, dropTestDatabase } from '../support/database';
import { startServer, stopAllServers } from '../support/processes';

describe('npm start with a production configuration and the explorer on', () => {
  let databaseUrl: string;

  beforeAll(async () => {
    databaseUrl = await createTestDatabase();
  });
  afterAll(async () => {
    await stopAllServers();
    await dropTestDatabase(databaseUrl);
  });

  it('mints no token: neither the explorer page nor the output carries one', async () => {
    const server = await startServer({
      NODE_ENV: 'production',
      JWT_SECRET: 'production-secret-for-tests-0123456789abcd',
      GRAPHQL_EXPLORER: 'graphiql',
      DATABASE_URL: databaseUrl,
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
    });

    const page = await (await fetch(server.url, { headers: { accept: 'text/html' } })).text();
    expect(page).toContain('id="graphiql"');
    expect(page).toContain('Idempotency-Key');
    // A JWT starts with the base64 of '{"alg"': eyJ.
    expect(page).not.toMatch(/Bearer|eyJ/);
    expect(server.output.stdout).not.toMatch(/eyJ|Development token/);
  });
});
