import { randomUUID } from 'node:crypto';
import { withClient } from '../support/database';
import { parseMetrics } from '../support/metrics';
import { startTestServer, type TestServer } from '../support/server';

// /metrics is readable only with METRICS_TOKEN when one is set, and its labels come from the
// schema: a client's operation name, which can say anything about anyone, never shows there.

const METRICS_TOKEN = 'scrape-token-0123456789abcdef';
const PLACE = `mutation PlaceOrder($input: CreateOrderInput!) { createOrder(input: $input) { order { id } } }`;

function metricsUrl(server: TestServer): URL {
  return new URL('/metrics', server.url);
}

async function durationLabels(server: TestServer, headers: Record<string, string> = {}): Promise<Map<string, number>> {
  const response = await fetch(metricsUrl(server), { headers });
  expect(response.status).toBe(200);
  const counts = new Map<string, number>();
  for (const sample of parseMetrics(await response.text())) {
    if (sample.name !== 'graphql_request_duration_seconds_count') continue;
    const label = `${sample.labels.operation}/${sample.labels.result}`;
    counts.set(label, (counts.get(label) ?? 0) + sample.value);
  }
  return counts;
}

describe('/metrics with METRICS_TOKEN', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ seed: false, env: { METRICS_TOKEN } });
  });
  afterAll(async () => {
    await server.close();
  });

  it.each([
    ['no Authorization header', {}],
    ['a wrong token', { authorization: 'Bearer scrape-token-0123456789abcdeX' }],
    ['the token without the Bearer scheme', { authorization: METRICS_TOKEN }],
    ['a GraphQL user token', { authorization: `Bearer ${'x'.repeat(40)}` }],
  ])('answers 401 with %s and reveals no metric', async (_case, headers) => {
    const response = await fetch(metricsUrl(server), { headers });
    expect(response.status).toBe(401);
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(await response.text()).not.toMatch(/graphql_request_duration_seconds|process_cpu/);
  });

  it('serves the metrics with Authorization: Bearer <METRICS_TOKEN>', async () => {
    const response = await fetch(metricsUrl(server), { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(response.status).toBe(200);
    expect(await response.text()).toMatch(/^# HELP /m);
  });
});

describe('/metrics labels', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server.close();
  });

  it('is open when no METRICS_TOKEN is set', async () => {
    expect((await fetch(metricsUrl(server))).status).toBe(200);
  });

  it('labels requests by the root field the schema names, never by the client operation name', async () => {
    const token = await server.token('metrics-labels');
    const productId = await withClient(
      server.databaseUrl,
      async (client) => (await client.query('SELECT id FROM products LIMIT 1')).rows[0].id,
    );
    const before = await durationLabels(server);
    await server.gql('query AliceBuysEngagementRing_for_Bob { viewer { id } }', undefined, { token });
    await server.gql(PLACE, { input: { lines: [{ productId, quantity: 1 }] } }, { token });
    await server.gql(PLACE, { input: { lines: [{ productId: randomUUID(), quantity: 1 }] } }, { token });
    await server.gql('query Both { viewer { id } products(first: 1) { edges { cursor } } }');
    await server.gql('query Broken { nope }');
    const after = await durationLabels(server);
    const moved = (label: string) => (after.get(label) ?? 0) - (before.get(label) ?? 0);

    expect(moved('query.viewer/success')).toBe(1);
    expect(moved('mutation.createOrder/success')).toBe(1);
    expect(moved('mutation.createOrder/error')).toBe(1);
    expect(moved('query.multiple/success')).toBe(1);
    expect(moved('unresolved/error')).toBe(1);
    const text = await (await fetch(metricsUrl(server))).text();
    expect(text).not.toMatch(/AliceBuysEngagementRing|PlaceOrder|Broken/);
  });

  it('keeps the label set bounded by the schema whatever operation names clients send', async () => {
    const names = Array.from({ length: 150 }, (_, index) => `Browse${index}_${randomUUID().replaceAll('-', '')}`);
    for (const name of names) await server.gql(`query ${name} { __typename }`);
    await fetch(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ query: '{ __typename }', operationName: `<script>${'x'.repeat(200)}` }),
    });
    const labels = new Set([...(await durationLabels(server)).keys()].map((label) => label.split('/')[0]));
    const allowed = /^(unresolved|introspection|(query|mutation)\.(multiple|[A-Za-z_][A-Za-z0-9_]*))$/;
    expect([...labels].every((label) => label !== undefined && allowed.test(label))).toBe(true);
    expect(labels.has('introspection')).toBe(true);
    expect(labels.size).toBeLessThanOrEqual(12);
  });

  it('estimates the stored idempotency records before any ANALYZE has run', async () => {
    const token = await server.token('metrics-estimate');
    const productId = await withClient(
      server.databaseUrl,
      async (client) => (await client.query('SELECT id FROM products LIMIT 1')).rows[0].id,
    );
    for (let index = 0; index < 120; index++) {
      const response = await server.gql(PLACE, { input: { lines: [{ productId, quantity: 1 }] } }, { token });
      expect(response.body.errors).toBeUndefined();
    }
    // Statistics reach other sessions once the writing sessions report them (within a second or
    // so of going idle): polled until then, not waited for by a fixed sleep.
    let estimate = 0;
    for (let attempt = 0; attempt < 100 && estimate < 120; attempt++) {
      const text = await (await fetch(metricsUrl(server))).text();
      estimate = parseMetrics(text).find((sample) => sample.name === 'idempotency_records_estimate')?.value ?? 0;
      if (estimate < 120) await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const stored = await withClient(server.databaseUrl, async (client) =>
      Number((await client.query('SELECT count(*) FROM idempotency_records')).rows[0].count),
    );
    expect(stored).toBeGreaterThanOrEqual(120);
    expect(estimate).toBeGreaterThanOrEqual(120);
    // The statistics collector's live-row count is an estimate: it may run a few rows ahead of
    // count(*) (for example while earlier tests' records are still being accounted for).
    expect(estimate).toBeLessThanOrEqual(stored * 1.1);
  });
});
