import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../observability/metrics';

/** `/metrics`: Prometheus text format. */
export function registerMetricsRoute(app: FastifyInstance, metrics: Metrics): void {
  app.get('/metrics', async (_request, reply) => {
    const body = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(body);
  });
}
