import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { build } from 'esbuild';
import type { Page } from 'playwright-core';
import { type Browser, launchChromium } from '../support/browser';
import { withClient } from '../support/database';
import { startTestServer, type TestServer } from '../support/server';

// The page's script: the real urql and Apollo Client, bundled for the browser, with their default
// settings (urql sends queries by GET; Apollo Client adds its client awareness headers).
const ENTRY = `
import { createClient, fetchExchange } from '@urql/core';
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { createIdempotencyLink } from ${JSON.stringify(path.join(__dirname, '../../clients/src/apollo'))};
import { readIdempotency } from ${JSON.stringify(path.join(__dirname, '../../clients/src/marker'))};

const PRODUCTS = gql\`query Products($first: Int) { products(first: $first) { edges { node { id sku } } } }\`;
const CREATE_ORDER = gql\`mutation CreateOrder($input: CreateOrderInput!) { createOrder(input: $input) { order { id } } }\`;

window.urqlQuery = async (url) => {
  const client = createClient({ url, exchanges: [fetchExchange] });
  const result = await client.query(PRODUCTS, { first: 2 }).toPromise();
  return { skus: result.data?.products.edges.map((edge) => edge.node.sku), error: result.error?.message };
};

window.apolloQuery = async (url) => {
  const client = new ApolloClient({ cache: new InMemoryCache(), link: new HttpLink({ uri: url }), clientAwareness: { name: 'shop-web', version: '1.0.0' } });
  const result = await client.query({ query: PRODUCTS, variables: { first: 2 } });
  return { skus: result.data?.products.edges.map((edge) => edge.node.sku), error: result.error?.message };
};

window.apolloOrder = async (url, token, productId) => {
  const client = new ApolloClient({
    cache: new InMemoryCache(),
    clientAwareness: { name: 'shop-web', version: '1.0.0' },
    link: ApolloLink.from([createIdempotencyLink(), new HttpLink({ uri: url, headers: { authorization: 'Bearer ' + token } })]),
  });
  const result = await client.mutate({ mutation: CREATE_ORDER, variables: { input: { lines: [{ productId, quantity: 1 }] } } });
  return { orderId: result.data?.createOrder.order.id, marker: readIdempotency(result), error: result.error?.message };
};
`;

describe('urql and Apollo Client in Chromium, calling the API from another origin', () => {
  let api: TestServer;
  let site: http.Server;
  let origin: string;
  let browser: Browser;
  let page: Page;
  const blocked: string[] = [];

  beforeAll(async () => {
    const bundle = await build({
      stdin: { contents: ENTRY, resolveDir: path.join(__dirname, '../..'), loader: 'ts' },
      bundle: true,
      write: false,
      format: 'iife',
      platform: 'browser',
      define: { 'process.env.NODE_ENV': '"production"' },
      logLevel: 'silent',
    });
    const script = bundle.outputFiles[0]!.text;
    // The shop's own site: a page and its script, on an origin of its own.
    site = http.createServer((request, response) => {
      if (request.url === '/app.js') return void response.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
      response.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>shop</title><script src="/app.js"></script>');
    });
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(site.address() as AddressInfo).port}`;
    api = await startTestServer({ env: { CORS_ORIGINS: origin } });

    // No request interception here: Playwright answers CORS preflights of intercepted requests
    // itself, which would hide the server's. The network is closed by name resolution instead.
    browser = await launchChromium({ args: ['--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1'] });
    browser.context.on('request', (request) => {
      if (new URL(request.url()).hostname !== '127.0.0.1') blocked.push(request.url());
    });
    page = browser.page;
    await page.goto(origin, { waitUntil: 'load' });
  });

  /** Evaluates an expression in the page; its promise is awaited there. */
  const run = <T>(expression: string) => page.evaluate(expression) as Promise<T>;

  afterAll(async () => {
    await browser?.close();
    await api?.close();
    await new Promise((resolve) => site?.close(resolve));
  });

  it('answers urql’s default GET query across origins', async () => {
    const result = await run<{ skus?: string[]; error?: string }>(`window.urqlQuery(${JSON.stringify(api.url)})`);
    expect(result).toEqual({ skus: [expect.any(String), expect.any(String)] });
  });

  it('answers Apollo Client’s query with its client awareness headers across origins', async () => {
    const result = await run<{ skus?: string[]; error?: string }>(`window.apolloQuery(${JSON.stringify(api.url)})`);
    expect(result).toEqual({ skus: [expect.any(String), expect.any(String)] });
  });

  it('places an order through the idempotency link across origins, its key and replay marker allowed by CORS', async () => {
    const user = 'browser-shopper';
    const [row] = await withClient(
      api.databaseUrl,
      async (db) => (await db.query<{ id: string }>("select id from products where sku = 'MUG-001'")).rows,
    );
    const result = await run<{ orderId?: string; marker?: { replayed: boolean; key: string }; error?: string }>(
      `window.apolloOrder(${JSON.stringify(api.url)}, ${JSON.stringify(await api.token(user))}, ${JSON.stringify(row!.id)})`,
    );
    expect(result.error).toBeUndefined();
    expect(result.marker).toMatchObject({ replayed: false, key: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    const orders = await withClient(
      api.databaseUrl,
      async (db) => (await db.query('select id from orders where user_id = $1', [user])).rows,
    );
    expect(orders).toEqual([{ id: result.orderId }]);
    expect(blocked).toEqual([]);
  });
});
