import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startTestServer, type TestServer } from '../support/server';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '..', '..');
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** The shell blocks of one README section, in order. */
function shellBlocks(section: string): string[] {
  const start = README.indexOf(`## ${section}`);
  const end = README.indexOf('\n## ', start + 1);
  const text = README.slice(start, end === -1 ? undefined : end);
  return [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((match) => match[1] as string);
}

describe('the README walkthrough, run as written', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server.close();
  });

  it('places one order, replays it on the identical retry and refuses the reused key', async () => {
    const blocks = shellBlocks('Your first idempotent mutation');
    expect(blocks).toHaveLength(4);
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
    const outputs = stdout.split(/---block \d---\n?/);
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

    const orders = await server.gql<{ orders: { edges: unknown[] } }>(
      '{ orders { edges { node { id } } } }',
      {},
      { token: await server.token('alice') },
    );
    expect(orders.body.data?.orders.edges).toEqual([{ node: { id: orderId } }]);
  });
});
