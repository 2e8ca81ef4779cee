import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { signToken } from '../../src/auth/token';
import { withTimeout } from '../../src/timeout';
import type { GraphQLResponse } from './server';

/** The real entry point, built by `npm run build` (npm test's pretest). */
export const MAIN = path.resolve(__dirname, '..', '..', 'dist', 'src', 'main.js');
const READY_TIMEOUT_MS = 45_000;
const EXIT_TIMEOUT_MS = 20_000;

/** How a process ended. */
export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A Node.js process spawned by {@link spawnNode}, with what it printed so far. */
export interface Spawned {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly output: { stdout: string; stderr: string };
  /** Settles when the process has exited. */
  readonly exited: Promise<Exit>;
  /** Settles when the process has exited and its stdout and stderr are drained. */
  readonly closed: Promise<Exit>;
}

/** A server process, ready to serve GraphQL at `url`. */
export interface ServerProcess extends Spawned {
  readonly url: string;
}

// Every process spawned here that has not exited yet: the only pids these helpers ever signal.
const running = new Map<number, Spawned>();

/** Only what a shell would hand a process, so no variable of the test run (NODE_ENV=test, ...) leaks in. */
export function shellEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ['PATH', 'HOME', 'LANG', 'TMPDIR']) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Spawns `node script` with `env` on top of {@link shellEnv}, collecting its output. */
export function spawnNode(script: string, env: Record<string, string>, options: { cwd?: string } = {}): Spawned {
  const child = spawn(process.execPath, [script], { cwd: options.cwd, env: { ...shellEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = { stdout: '', stderr: '' };
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    output.stdout += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    output.stderr += chunk;
  });
  const exited = new Promise<Exit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const closed = new Promise<Exit>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  if (child.pid === undefined) throw new Error(`could not spawn ${script}`);
  const spawned = { child, pid: child.pid, output, exited, closed };
  running.set(spawned.pid, spawned);
  void exited.then(() => running.delete(spawned.pid));
  return spawned;
}

/** The JSON lines (pino) a process printed; a partial last line is left out. */
export function logLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
}

/** The URL of the pino line `GraphQL API ready`, once the process has printed it. */
function readyUrl(stdout: string): string | undefined {
  const url = logLines(stdout).find((entry) => entry.msg === 'GraphQL API ready')?.url;
  return typeof url === 'string' ? url : undefined;
}

/** Spawns `node dist/src/main.js` with `env` on top of a minimal shell environment and waits until it serves. */
export async function startServer(env: Record<string, string>): Promise<ServerProcess> {
  const spawned = spawnNode(MAIN, env);
  const { child, output, exited } = spawned;
  const url = await withTimeout(
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const found = readyUrl(output.stdout);
        if (found) {
          child.stdout?.off('data', check);
          resolve(found);
        }
      };
      child.stdout?.on('data', check);
      void exited.then((exit) =>
        reject(new Error(`server exited (${JSON.stringify(exit)}) before it was ready:\n${output.stdout}\n${output.stderr}`)),
      );
    }),
    READY_TIMEOUT_MS,
    'the server to be ready',
  );
  return { ...spawned, url };
}

/** Sends `signal` to a process spawned here (never to any other pid) and waits for it to exit. */
export async function signalServer(server: Spawned, signal: NodeJS.Signals): Promise<Exit> {
  if (running.has(server.pid)) process.kill(server.pid, signal);
  return withTimeout(server.exited, EXIT_TIMEOUT_MS, `the server to exit on ${signal}`);
}

/** Stops every process spawned here that is still running: SIGTERM, then SIGKILL past the timeout. */
export async function stopAllServers(): Promise<void> {
  await Promise.all(
    [...running].map(async ([pid, { exited }]) => {
      process.kill(pid, 'SIGTERM');
      try {
        await withTimeout(exited, EXIT_TIMEOUT_MS, `process ${pid} to exit on SIGTERM`);
      } catch {
        if (running.has(pid)) process.kill(pid, 'SIGKILL');
        await exited;
      }
    }),
  );
}

/** POSTs a GraphQL operation; rejects when the connection fails or the body cannot be read. */
export async function postGraphQL<T = Record<string, unknown>>(
  url: string,
  query: string,
  variables: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<GraphQLResponse<T>> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ query, variables }),
  });
  return { status: response.status, headers: response.headers, body: (await response.json()) as GraphQLResponse<T>['body'] };
}

/** The JWT secret of every spawned test server; tokens for them are minted with it. */
export const SPAWNED_JWT_SECRET = 'spawned-server-test-secret-0123456789-abcdefghijklmnop';

/**
 * The environment of a spawned server on `databaseUrl`, plus `extra`. Readiness is read from
 * the info line `GraphQL API ready`; the rate limit is off because tests fire bursts per user.
 */
export function serverEnv(databaseUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'info',
    NODE_ENV: 'development',
    JWT_SECRET: SPAWNED_JWT_SECRET,
    RATE_LIMIT_MUTATIONS_PER_MINUTE: '0',
    ...extra,
  };
}

/** A bearer token for `user` that spawned servers accept, valid for an hour. */
export function tokenFor(user: string): Promise<string> {
  return signToken({ id: user, roles: [] }, SPAWNED_JWT_SECRET, '1h');
}
