import { withClient } from './support/database';
import { startTestServer, type TestServer } from './support/server';

describe('health and readiness', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ seed: false });
  });
  afterAll(async () => {
    await server.close();
  });

  it('reports the process up on /healthz', async () => {
    const response = await fetch(server.url.replace('/graphql', '/healthz'));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok' });
  });

  it('reports ready while the database answers, and 503 when it refuses connections', async () => {
    const readyz = server.url.replace('/graphql', '/readyz');
    expect((await fetch(readyz)).status).toBe(200);

    const name = new URL(server.databaseUrl).pathname.slice(1);
    const admin = new URL(server.databaseUrl);
    admin.pathname = '/postgres';
    await withClient(admin.toString(), async (client) => {
      await client.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
      await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [name]);
    });
    try {
      const response = await fetch(readyz);
      expect(response.status).toBe(503);
      expect(await response.json()).toMatchObject({ status: 'unavailable' });
    } finally {
      await withClient(admin.toString(), (client) => client.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`));
    }
    expect((await fetch(readyz)).status).toBe(200);
  });
});
