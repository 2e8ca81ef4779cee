import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startTestServer, type TestServer } from '../support/server';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

const GUIDE = readFileSync(path.join(ROOT, 'docs', 'idempotency.md'), 'utf8');

/** The shell blocks of one section of a document (the whole document without a section), in order. */
function shellBlocks(document: string, section?: string): string[] {
  const start = section ? document.indexOf(`## ${section}`) : 0;
  const end = section ? document.indexOf('\n## ', start + 1) : -1;
  const text = document.slice(start, end === -1 ? undefined : end);
  return [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1] as string);
}

/** Runs shell blocks as one script against the test server, returning each block's output. */
async function runBlocks(server: TestServer, blocks: string[]): Promise<string[]> {
  // Only the address changes (the test server listens on a free port), and the token command
  // runs the already built CLI instead of rebuilding while other tests use dist/.
  const script = blocks
    .map((block, index) => `${block}\necho "---block ${index}---"`)
    .join('\n')
    .replaceAll('http://127.0.0.1:4000/graphql', server.url)
    .replaceAll('npm run --silent token --', `node ${path.join(ROOT, 'dist/src/auth/token.cli.js')}`);
  const { stdout } = await run('bash', ['-euo', 'pipefail', '-c', script], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' },
    timeout: 30_000,
  });
  return stdout.split(/---block \d+---\n?/);
}

/** The lower-cased names of `Name: value` header lines. */
function headerNames(lines: string): string[] {
  return lines
    .split(/\r?\n/)
    .filter((line) => /^[A-Za-z-]+: /.test(line))
    .map((line) => line.slice(0, line.indexOf(':')).toLowerCase());
}

describe('the README walkthrough, run as written', () => {
  let server: TestServer;
  beforeAll(async () => {
    // The default rate limit, whose headers the README's output shows.
    server = await startTestServer({ env: { RATE_LIMIT_MUTATIONS_PER_MINUTE: '600' } });
  });
  afterAll(async () => {
    await server.close();
  });

  it('places one order, replays it on the identical retry and refuses the reused key', async () => {
    const blocks = shellBlocks(README, 'Your first idempotent mutation');
    expect(blocks).toHaveLength(4);
    const outputs = await runBlocks(server, blocks);
    const [, first, replay, reused] = outputs;

    expect(first).toMatch(/^HTTP\/1\.1 200/);
    expect(first).toContain('"replayed":false');
    expect(first?.toLowerCase()).not.toContain('idempotent-replayed');
    expect(replay).toContain('"replayed":true');
    expect(replay?.toLowerCase()).toContain('idempotent-replayed: true');
    const orderId = /"id":"([0-9a-f-]{36})"/.exec(first ?? '')?.[1];
    expect(orderId).toBeDefined();
    expect(replay).toContain(orderId);
    expect(reused).toContain('IDEMPOTENCY_KEY_REUSED');

    // The output shown holds only headers really sent, and every header left out is named.
    const section = README.slice(
      README.indexOf('## Your first idempotent mutation'),
      README.indexOf('\n## ', README.indexOf('## Your first')),
    );
    const shown = [...section.matchAll(/```\nHTTP\/1\.1[^\n]*\n([\s\S]*?)\n\n/g)].map((match) => headerNames(match[1] ?? ''));
    expect(shown).toHaveLength(2);
    const omitted = new Set(
      [...(/Left out[\s\S]*?\n\n/.exec(section)?.[0] ?? '').matchAll(/`([A-Za-z-]+)`/g)].map((match) => (match[1] as string).toLowerCase()),
    );
    for (const [index, output] of [first, replay].entries()) {
      const sent = headerNames(
        (output ?? '')
          .split(/\r?\n\r?\n/)[0]
          ?.split(/\r?\n/)
          .slice(1)
          .join('\n') ?? '',
      );
      expect(shown[index]?.filter((name) => !sent.includes(name))).toEqual([]);
      expect(sent.filter((name) => !shown[index]?.includes(name) && !omitted.has(name))).toEqual([]);
    }

    const orders = await server.gql<{ orders: { edges: unknown[] } }>(
      '{ orders { edges { node { id } } } }',
      {},
      { token: await server.token('alice') },
    );
    expect(orders.body.data?.orders.edges).toEqual([{ node: { id: orderId } }]);
  });
  it("runs the guide's commands: a keyed order and the lookup of its record", async () => {
    const setup = shellBlocks(README, 'Your first idempotent mutation')[0] as string;
    const guide = shellBlocks(GUIDE);
    expect(guide).toHaveLength(2);
    const [, order, record] = await runBlocks(server, [setup, ...guide]);
    expect(order).toContain('"status":"PLACED"');
    expect(JSON.parse(record ?? '')).toMatchObject({
      data: { idempotencyRecord: { key: 'order-7f3a9c', operation: 'createOrder', outcome: 'SUCCEEDED' } },
    });
  });
});
