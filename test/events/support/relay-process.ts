import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';

const RELAY = path.resolve(__dirname, '..', '..', '..', 'dist', 'src', 'events', 'relay.cli.js');

/** A relay process spawned by a test; only its own pid is ever signalled. */
export interface RelayProcess {
  readonly pid: number;
  readonly output: { stderr: string };
  kill(): Promise<void>;
}

const running = new Set<ChildProcess>();

export function spawnRelay(databaseUrl: string, natsUrl: string, env: Record<string, string> = {}): RelayProcess {
  const child = spawn(process.execPath, [RELAY], {
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'test',
      LOG_LEVEL: 'warn',
      EVENTS_RELAY_POLL_MS: '20',
      ...env,
      DATABASE_URL: databaseUrl,
      NATS_URL: natsUrl,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  running.add(child);
  const output = { stderr: '' };
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    output.stderr += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => running.delete(child));
  return {
    pid: child.pid as number,
    output,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid as number, 'SIGKILL');
      await exited;
    },
  };
}

/** SIGKILLs every relay still running (test clean-up). */
export async function killAllRelays(): Promise<void> {
  await Promise.all(
    [...running].map(async (child) => {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid as number, 'SIGKILL');
      await new Promise<void>((resolve) =>
        child.exitCode !== null || child.signalCode !== null ? resolve() : child.once('exit', () => resolve()),
      );
    }),
  );
}
