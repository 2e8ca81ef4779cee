import path from 'node:path';
import { type Spawned, spawnNode } from '../../support/processes';

const RELAY = path.resolve(__dirname, '..', '..', '..', 'dist', 'src', 'events', 'relay.cli.js');

/** A relay process spawned by a test; only its own pid is ever signalled. */
export interface RelayProcess {
  readonly pid: number;
  readonly output: { stderr: string };
  kill(): Promise<void>;
}

const running = new Set<Spawned>();

function kill(relay: Spawned): Promise<unknown> {
  if (relay.child.exitCode === null && relay.child.signalCode === null) process.kill(relay.pid, 'SIGKILL');
  return relay.exited;
}

export function spawnRelay(databaseUrl: string, natsUrl: string, env: Record<string, string> = {}): RelayProcess {
  const relay = spawnNode(RELAY, {
    NODE_ENV: 'test',
    LOG_LEVEL: 'warn',
    EVENTS_RELAY_POLL_MS: '20',
    ...env,
    DATABASE_URL: databaseUrl,
    NATS_URL: natsUrl,
  });
  running.add(relay);
  void relay.exited.then(() => running.delete(relay));
  return {
    pid: relay.pid,
    output: relay.output,
    kill: async () => {
      await kill(relay);
    },
  };
}

/** SIGKILLs every relay still running (test clean-up). */
export async function killAllRelays(): Promise<void> {
  await Promise.all([...running].map(kill));
}
