import path from 'node:path';

/** Thrown when the environment holds a value the service cannot run with. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable}: ${message}`);
    this.name = 'ConfigError';
  }
}

export type NodeEnv = 'development' | 'production' | 'test';
/** The GraphQL IDE served on GET /graphql to a browser. */
export type ExplorerKind = 'graphiql' | 'sandbox' | 'off';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/** Everything the service reads from its environment, parsed and validated once. */
export interface Config {
  /** `NODE_ENV`; default `development`. Production turns off the landing page and introspection. */
  readonly nodeEnv: NodeEnv;
  /** `PORT`; default 4000. */
  readonly port: number;
  /** `HOST`; default 127.0.0.1. */
  readonly host: string;
  /** `DATABASE_URL`; unset means an embedded PostgreSQL is started under `dataDir`. */
  readonly databaseUrl: string | undefined;
  /** `DATA_DIR`, absolute; default `./.data`. */
  readonly dataDir: string;
  /** `EMBEDDED_PG_PORT`; default 0, a free port chosen at start. */
  readonly embeddedPgPort: number;
  /** `JWT_SECRET`; a fixed development secret unless production. */
  readonly jwtSecret: string;
  /** True when `jwtSecret` is the built-in development secret. */
  readonly jwtSecretIsDefault: boolean;
  /** `JWT_MAX_LIFETIME_SECONDS`; default 2592000 (30 days). Tokens must carry `exp`, at most this long after `iat`. */
  readonly jwtMaxLifetimeSeconds: number;
  readonly idempotency: IdempotencyConfig;
  readonly http: HttpConfig;
  /** `STATEMENT_TIMEOUT_MS`; default 15000. PostgreSQL `statement_timeout` of every connection. */
  readonly statementTimeoutMs: number;
  /** `LOG_LEVEL`; default `info`. */
  readonly logLevel: LogLevel;
  /** `SEED_DEMO_CATALOG`; default true in development and test, false in production. Seeds an empty catalog at start. */
  readonly seedDemoCatalog: boolean;
  readonly events: EventsConfig;
}

export interface EventsConfig {
  /** `NATS_URL`; unset by default. When set, the relay publishes the outbox to JetStream (docs/events.md). */
  readonly natsUrl: string | undefined;
  /** `EVENTS_RELAY_BATCH`; default 100. Events published per relay transaction. */
  readonly relayBatch: number;
  /** `EVENTS_RELAY_POLL_MS`; default 200. Pause of an idle relay before it looks again. */
  readonly relayPollMs: number;
  /** `EVENTS_RETENTION_SECONDS`; default 604800 (7 days). Published events older than this are purged. */
  readonly retentionSeconds: number;
}

export interface HttpConfig {
  /** `REQUEST_TIMEOUT_MS`; default 30000. A GraphQL request running longer is answered 503. */
  readonly requestTimeoutMs: number;
  /** `SHUTDOWN_GRACE_MS`; default 10000. How long in-flight requests may finish after SIGTERM. */
  readonly shutdownGraceMs: number;
  /** `RATE_LIMIT_MUTATIONS_PER_MINUTE`; default 600 per user (0 = off). */
  readonly mutationsPerMinute: number;
  /** `CORS_ORIGINS`: comma-separated origins allowed cross-origin, or `*`; default none. */
  readonly corsOrigins: readonly string[];
  /**
   * `GRAPHQL_EXPLORER`: `graphiql` (served from npm packages, works offline), `sandbox` (Apollo
   * Sandbox, loaded from Apollo's CDN) or `off`; default `graphiql` outside production, `off` in
   * production. Any explorer also allows introspection. `true`/`false` mean `graphiql`/`off`.
   */
  readonly explorer: ExplorerKind;
  /** `METRICS_TOKEN`; unset by default. When set, `/metrics` needs `Authorization: Bearer <it>`. */
  readonly metricsToken: string | undefined;
}

export interface IdempotencyConfig {
  /** `IDEMPOTENCY_TTL_SECONDS`; default 86400. How long an outcome is kept and replayed. */
  readonly ttlSeconds: number;
  /**
   * `IDEMPOTENCY_TOMBSTONE_SECONDS`; default 2592000 (30 days), 0 turns tombstones off. How long after
   * an outcome expires its tombstone answers a retry with IDEMPOTENCY_KEY_EXPIRED instead of executing it.
   */
  readonly tombstoneSeconds: number;
  /** `IDEMPOTENCY_WAIT_MS`; default 10000. How long a duplicate waits for an in-flight first request. */
  readonly waitMs: number;
  /** `IDEMPOTENCY_PURGE_INTERVAL_SECONDS`; default 300, 0 turns the background purge off. */
  readonly purgeIntervalSeconds: number;
  /** `IDEMPOTENCY_ENCRYPTION_KEY` decoded (32 bytes), or undefined for plain storage. */
  readonly encryptionKey: Buffer | undefined;
  /** `IDEMPOTENCY_ENCRYPTION_PREVIOUS_KEYS`: comma-separated base64 keys that still decrypt older records. */
  readonly previousEncryptionKeys: readonly Buffer[];
}

/** The secret used for development tokens when `JWT_SECRET` is not set outside production. */
export const DEVELOPMENT_JWT_SECRET = 'development-secret-do-not-use-in-production-0123456789';

const NODE_ENVS: readonly NodeEnv[] = ['development', 'production', 'test'];
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

type Env = Readonly<Record<string, string | undefined>>;

/** Reads and validates the environment; throws {@link ConfigError} naming the first bad variable. */
export function loadConfig(env: Env = process.env, cwd: string = process.cwd()): Config {
  const nodeEnv = oneOf(env, 'NODE_ENV', NODE_ENVS, 'development');
  const secret = optional(env, 'JWT_SECRET');
  if (secret === undefined && nodeEnv === 'production') {
    throw new ConfigError('JWT_SECRET', 'is required when NODE_ENV=production');
  }
  if (secret !== undefined && Buffer.byteLength(secret) < 32) {
    throw new ConfigError('JWT_SECRET', 'must be at least 32 bytes long for HS256');
  }
  return {
    nodeEnv,
    port: integer(env, 'PORT', 4000, 0, 65535),
    host: optional(env, 'HOST') ?? '127.0.0.1',
    databaseUrl: databaseUrl(env),
    dataDir: path.resolve(cwd, optional(env, 'DATA_DIR') ?? '.data'),
    embeddedPgPort: integer(env, 'EMBEDDED_PG_PORT', 0, 0, 65535),
    jwtSecret: secret ?? DEVELOPMENT_JWT_SECRET,
    jwtSecretIsDefault: secret === undefined,
    jwtMaxLifetimeSeconds: integer(env, 'JWT_MAX_LIFETIME_SECONDS', 2_592_000, 60, 31_536_000),
    idempotency: {
      ttlSeconds: integer(env, 'IDEMPOTENCY_TTL_SECONDS', 86_400, 1, 31_536_000),
      tombstoneSeconds: integer(env, 'IDEMPOTENCY_TOMBSTONE_SECONDS', 2_592_000, 0, 31_536_000),
      waitMs: integer(env, 'IDEMPOTENCY_WAIT_MS', 10_000, 0, 600_000),
      purgeIntervalSeconds: integer(env, 'IDEMPOTENCY_PURGE_INTERVAL_SECONDS', 300, 0, 86_400),
      encryptionKey: encryptionKey(env),
      previousEncryptionKeys: previousEncryptionKeys(env),
    },
    http: {
      requestTimeoutMs: integer(env, 'REQUEST_TIMEOUT_MS', 30_000, 100, 600_000),
      shutdownGraceMs: integer(env, 'SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
      mutationsPerMinute: integer(env, 'RATE_LIMIT_MUTATIONS_PER_MINUTE', 600, 0, 1_000_000),
      corsOrigins: origins(env),
      explorer: explorer(env, nodeEnv),
      metricsToken: metricsToken(env),
    },
    statementTimeoutMs: integer(env, 'STATEMENT_TIMEOUT_MS', 15_000, 0, 3_600_000),
    logLevel: oneOf(env, 'LOG_LEVEL', LOG_LEVELS, 'info'),
    seedDemoCatalog: boolean(env, 'SEED_DEMO_CATALOG', nodeEnv !== 'production'),
    events: {
      natsUrl: optional(env, 'NATS_URL'),
      relayBatch: integer(env, 'EVENTS_RELAY_BATCH', 100, 1, 10_000),
      relayPollMs: integer(env, 'EVENTS_RELAY_POLL_MS', 200, 1, 60_000),
      retentionSeconds: integer(env, 'EVENTS_RETENTION_SECONDS', 604_800, 0, 31_536_000),
    },
  };
}

function optional(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === '' ? undefined : value;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = optional(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) {
    throw new ConfigError(name, `expected a whole number, got ${JSON.stringify(raw)}`);
  }
  const value = Number(raw);
  if (value < min || value > max) {
    throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  }
  return value;
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = optional(env, name);
  if (raw === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `must be one of ${allowed.join(', ')}, got ${JSON.stringify(raw)}`);
  }
  return raw as T;
}

function boolean(env: Env, name: string, fallback: boolean): boolean {
  const raw = optional(env, name);
  if (raw === undefined) return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new ConfigError(name, `expected true or false, got ${JSON.stringify(raw)}`);
}

const EXPLORER_KINDS: readonly ExplorerKind[] = ['graphiql', 'sandbox', 'off'];

function explorer(env: Env, nodeEnv: NodeEnv): ExplorerKind {
  const raw = optional(env, 'GRAPHQL_EXPLORER');
  // The boolean values of earlier versions keep working: true is the default explorer.
  if (raw !== undefined && ['true', '1', 'false', '0'].includes(raw)) return boolean(env, 'GRAPHQL_EXPLORER', false) ? 'graphiql' : 'off';
  return oneOf(env, 'GRAPHQL_EXPLORER', EXPLORER_KINDS, nodeEnv === 'production' ? 'off' : 'graphiql');
}

function origins(env: Env): string[] {
  const raw = optional(env, 'CORS_ORIGINS');
  if (raw === undefined) return [];
  const list = raw
    .split(',')
    .map((origin) => origin.trim())
    .filter((origin) => origin !== '');
  for (const origin of list) {
    if (origin === '*') continue;
    let url: URL | undefined;
    try {
      url = new URL(origin);
    } catch {
      url = undefined;
    }
    if (!url || url.origin !== origin) {
      throw new ConfigError('CORS_ORIGINS', `expected origins such as https://app.example.com, or *, got ${JSON.stringify(origin)}`);
    }
  }
  return list;
}

function databaseUrl(env: Env): string | undefined {
  const raw = optional(env, 'DATABASE_URL');
  if (raw === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError('DATABASE_URL', 'is not a valid URL (expected postgres://user:pass@host:port/db)');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError('DATABASE_URL', `must use the postgres:// scheme, got ${url.protocol}`);
  }
  if (url.pathname.length <= 1) {
    throw new ConfigError('DATABASE_URL', 'must name a database (postgres://user:pass@host:port/db)');
  }
  return raw;
}

function metricsToken(env: Env): string | undefined {
  const raw = optional(env, 'METRICS_TOKEN');
  if (raw === undefined) return undefined;
  // The characters a bearer token may hold (RFC 6750 b64token), so that it fits the header as is.
  if (!/^[A-Za-z0-9\-._~+/]+=*$/.test(raw) || raw.length < 16) {
    throw new ConfigError('METRICS_TOKEN', 'must be at least 16 characters of A-Z a-z 0-9 - . _ ~ + / (openssl rand -hex 24)');
  }
  return raw;
}

function encryptionKey(env: Env): Buffer | undefined {
  const raw = optional(env, 'IDEMPOTENCY_ENCRYPTION_KEY');
  return raw === undefined ? undefined : aesKey(raw, 'IDEMPOTENCY_ENCRYPTION_KEY');
}

function previousEncryptionKeys(env: Env): Buffer[] {
  const raw = optional(env, 'IDEMPOTENCY_ENCRYPTION_PREVIOUS_KEYS');
  if (raw === undefined) return [];
  return raw.split(',').map((part) => aesKey(part.trim(), 'IDEMPOTENCY_ENCRYPTION_PREVIOUS_KEYS'));
}

function aesKey(raw: string, name: string): Buffer {
  const key = /^[A-Za-z0-9+/]+={0,2}$/.test(raw) ? Buffer.from(raw, 'base64') : Buffer.alloc(0);
  if (key.length !== 32) throw new ConfigError(name, 'must be 32 bytes encoded in base64 (openssl rand -base64 32)');
  return key;
}
