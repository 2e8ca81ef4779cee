import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../observability/metrics';

export interface MetricsRouteOptions {
  /** `METRICS_TOKEN`: when set, a scrape must send `Authorization: Bearer <token>`. */
  readonly token?: string | undefined;
}

/** `/metrics`: Prometheus text format, behind a bearer token when one is configured. */
export function registerMetricsRoute(app: FastifyInstance, metrics: Metrics, options: MetricsRouteOptions = {}): void {
  const expected = options.token === undefined ? undefined : Buffer.from(`Bearer ${options.token}`);
  app.get('/metrics', async (request, reply) => {
    if (expected !== undefined && !sameSecret(request.headers.authorization, expected)) {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer realm="metrics"')
        .type('text/plain; charset=utf-8')
        .send('Unauthorized: send Authorization: Bearer <METRICS_TOKEN>\n');
    }
    const body = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(body);
  });
}

/** Compares in constant time, so the response time does not reveal how much of the token matched. */
function sameSecret(header: string | undefined, expected: Buffer): boolean {
  const given = Buffer.from(header ?? '');
  return given.length === expected.length && timingSafeEqual(given, expected);
}
