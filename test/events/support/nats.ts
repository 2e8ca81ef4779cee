import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { connect, type NatsConnection } from 'nats';

/** A nats-server with JetStream, started by a test on a free port and stopped by its pid. */
export interface NatsServer {
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

/** A port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return typeof address === 'object' && address ? address.port : 0;
}

export async function startNatsServer(): Promise<NatsServer> {
  const port = await freePort();
  const storeDir = mkdtempSync(path.join(os.tmpdir(), 'nats-js-'));
  const child: ChildProcess = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', storeDir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    log += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `nats://127.0.0.1:${port}`;
  for (let attempt = 0; ; attempt += 1) {
    if (child.exitCode !== null) throw new Error(`nats-server exited: ${log}`);
    const client = await connect({ servers: url, reconnect: false }).catch(() => undefined);
    if (client) {
      await client.close();
      break;
    }
    if (attempt > 200) throw new Error(`nats-server did not start: ${log}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url,
    pid: child.pid as number,
    stop: async () => {
      if (child.exitCode === null) process.kill(child.pid as number, 'SIGTERM');
      await exited;
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
}

/** Every message of the EVENTS stream, read by an ordered consumer. */
export async function streamMessages(
  nc: NatsConnection,
): Promise<{ subject: string; msgId: string | undefined; body: { id: string; type: string; data: Record<string, unknown> } }[]> {
  const jsm = await nc.jetstreamManager();
  const info = await jsm.streams.info('EVENTS');
  const count = info.state.messages;
  const messages = [];
  if (count === 0) return [];
  const consumer = await nc.jetstream().consumers.get('EVENTS');
  const iterator = await consumer.fetch({ max_messages: count, expires: 5_000 });
  for await (const message of iterator) {
    messages.push({ subject: message.subject, msgId: message.headers?.get('Nats-Msg-Id'), body: message.json<never>() });
    if (messages.length === count) break;
  }
  return messages;
}
