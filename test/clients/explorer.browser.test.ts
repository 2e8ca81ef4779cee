import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import type { Page } from 'playwright-core';
import { buildApp } from '../../src/http/app';
import { type Browser, launchChromium } from '../support/browser';
import { withClient } from '../support/database';
import { startTestServer, type TestServer } from '../support/server';

const ARTIFACTS = path.join(__dirname, '../../test-artifacts');

function isLoopback(url: string): boolean {
  const { protocol, hostname } = new URL(url);
  if (protocol === 'data:' || protocol === 'blob:' || protocol === 'about:') return true;
  return hostname === '127.0.0.1' || hostname === 'localhost' || hostname === '[::1]';
}

describe('the GraphiQL explorer in Chromium with the network closed', () => {
  let server: TestServer;
  let app: FastifyInstance;
  let url: string;
  let browser: Browser;
  let page: Page;
  const blocked: string[] = [];

  beforeAll(async () => {
    server = await startTestServer({ env: { NODE_ENV: 'development', GRAPHQL_EXPLORER: 'graphiql' } });
    const products = await server.gql<{ products: { edges: { node: { id: string } }[] } }>(
      '{ products(first: 1) { edges { node { id } } } }',
    );
    const exampleProductId = products.body.data?.products.edges[0]?.node.id;
    // The page main.ts serves in development: a development token and an example product.
    app = await buildApp({
      config: server.config,
      orm: server.orm,
      logger: pino({ level: 'silent' }),
      sandbox: { token: await server.token('explorer-user'), exampleProductId },
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/graphql`;

    browser = await launchChromium({ viewport: { width: 1400, height: 1400 } });
    // Every request leaving the machine is refused and remembered.
    await browser.context.route('**/*', (route) => {
      const target = route.request().url();
      if (isLoopback(target)) return route.continue();
      blocked.push(target);
      return route.abort('internetdisconnected');
    });
    page = browser.page;
  });

  afterAll(async () => {
    // The page as it was last, passing or not: a test artifact to look at.
    if (page) {
      await mkdir(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'explorer-last.png'), fullPage: true }).catch(() => undefined);
    }
    await browser?.close();
    await app?.close();
    await server?.close();
  });

  /** The text of GraphiQL's response pane (CodeMirror keeps it whole, whatever is scrolled into view); run in the page. */
  const RESPONSE_TEXT = "document.querySelector('.result-window .CodeMirror')?.CodeMirror?.getValue() ?? ''";

  async function responseText(): Promise<string> {
    return page.evaluate<string>(RESPONSE_TEXT);
  }

  async function runCreateOrder(): Promise<Record<string, unknown>> {
    const before = await responseText();
    // The document holds several operations: the run button asks which one.
    await page.locator('button.graphiql-execute-button').click();
    await page.getByRole('menuitem', { name: 'CreateOrder' }).click();
    const changed = `(() => { const text = ${RESPONSE_TEXT}; return text.includes('"idempotency"') && text !== ${JSON.stringify(before)}; })()`;
    await page.waitForFunction(changed, undefined, { timeout: 20_000 });
    return JSON.parse(await responseText()) as Record<string, unknown>;
  }

  it('runs the prefilled createOrder twice and shows the replay of the first order', async () => {
    await page.goto(url, { waitUntil: 'load' });
    await page.locator('.graphiql-container').waitFor({ timeout: 20_000 });
    await expect(page.locator('.graphiql-query-editor').innerText()).resolves.toContain('mutation CreateOrder');

    const first = (await runCreateOrder()) as {
      data: { createOrder: { order: { id: string } } };
      extensions: { idempotency: { replayed: boolean }[] };
    };
    expect(first.extensions.idempotency[0]?.replayed).toBe(false);
    const second = (await runCreateOrder()) as typeof first;
    expect(second.extensions.idempotency[0]?.replayed).toBe(true);
    expect(second.data.createOrder.order.id).toBe(first.data.createOrder.order.id);

    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'explorer-replay.png'), fullPage: true });

    const orders = await withClient(
      server.databaseUrl,
      async (db) => (await db.query("select id from orders where user_id = 'explorer-user'")).rows,
    );
    expect(orders).toEqual([{ id: first.data.createOrder.order.id }]);
    // Nothing was fetched from outside: every asset came from the server's npm packages.
    expect(blocked).toEqual([]);
  });
});
