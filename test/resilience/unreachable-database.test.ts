import { Writable } from 'node:stream';
import type { MikroORM } from '@mikro-orm/postgresql';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { loadConfig } from '../../src/config';
import { migrate, openOrm } from '../../src/database/orm';
import { seedCatalog } from '../../src/database/seed';
import { buildApp } from '../../src/http/app';
import { type Cluster, createCluster } from '../support/cluster';

// A database that is really stopped, reached through its Unix-domain socket (as the embedded
// database is by default): connecting fails with `connect ENOENT <dir>/.s.PGSQL.<port>`. Every
// such request must be a retryable SERVICE_UNAVAILABLE, logged as an outage, never as an
// unexpected error.

interface LogLine {
  level: number;
  msg: string;
  err?: { message?: string; cause?: { message?: string } };
}

describe('a stopped database reached through its Unix-domain socket', () => {
  let cluster: Cluster;
  let orm: MikroORM;
  let app: FastifyInstance;
  let url: string;
  const lines: LogLine[] = [];

  beforeAll(async () => {
    cluster = await createCluster();
    await cluster.start();
    const databaseUrl = `postgres://postgres@${encodeURIComponent(cluster.dataDir)}:${cluster.port}/postgres`;
    const config = loadConfig({ NODE_ENV: 'test', DATABASE_URL: databaseUrl, RATE_LIMIT_MUTATIONS_PER_MINUTE: '0', LOG_LEVEL: 'info' });
    orm = await openOrm({ clientUrl: databaseUrl });
    await migrate(orm);
    await seedCatalog(orm.em.fork());
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as LogLine);
        done();
      },
    });
    app = await buildApp({ config, orm, logger: pino({ level: 'info' }, sink) });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/graphql`;
  });

  afterAll(async () => {
    await app?.close();
    await orm?.close(true);
    await cluster?.destroy();
  });

  async function products(): Promise<{ status: number; body: { data?: unknown; errors?: { extensions?: Record<string, unknown> }[] } }> {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ products(first: 1) { edges { node { id } } } }' }),
    });
    return { status: response.status, body: (await response.json()) as never };
  }

  it('answers SERVICE_UNAVAILABLE, retryable, for every request and logs an outage rather than an unexpected error', async () => {
    expect((await products()).body.errors).toBeUndefined();
    await cluster.stop();

    // The pool's connections to the stopped server fail first; once they are gone, every
    // request has to connect, and connecting to the socket file fails with ENOENT.
    const answers = [];
    for (let attempt = 0; attempt < 6; attempt++) answers.push(await products());
    for (const answer of answers) {
      expect(answer.body.errors?.map((error) => error.extensions?.code)).toEqual(['SERVICE_UNAVAILABLE']);
      expect(answer.body.errors?.[0]?.extensions?.retryable).toBe(true);
    }
    const messages = (line: LogLine) => `${line.err?.message ?? ''} ${line.err?.cause?.message ?? ''}`;
    const outages = lines.filter((line) => line.msg === 'database unavailable');
    expect(outages.some((line) => /connect ENOENT .*\.s\.PGSQL\./.test(messages(line)))).toBe(true);
    expect(lines.filter((line) => line.msg === 'unexpected error in GraphQL execution')).toEqual([]);
  });
});
