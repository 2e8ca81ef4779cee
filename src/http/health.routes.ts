import type { MikroORM } from '@mikro-orm/postgresql';
import type { FastifyInstance } from 'fastify';
import { withTimeout } from '../timeout';

const READY_TIMEOUT_MS = 2000;

/** `/healthz`: the process is up. `/readyz`: the database answers within two seconds. */
export function registerHealthRoutes(app: FastifyInstance, orm: MikroORM): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (request, reply) => {
    try {
      await withTimeout(orm.em.getConnection().execute('select 1'), READY_TIMEOUT_MS, 'the readiness query');
      return { status: 'ready' };
    } catch (error) {
      request.log.warn({ err: error }, 'readiness check failed: database unreachable');
      return reply.code(503).send({ status: 'unavailable', reason: 'database unreachable' });
    }
  });
}
