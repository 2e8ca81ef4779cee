import path from 'node:path';
import { ConfigError, DEVELOPMENT_JWT_SECRET, loadConfig } from '../src/config';

const CWD = path.resolve('/srv/orders');
const SECRET = 'a-production-secret-of-at-least-32-bytes';
const KEY = Buffer.alloc(32, 7);

/** Runs loadConfig and returns the ConfigError it throws; fails the test when it throws nothing or something else. */
function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env, CWD);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(env)}`);
}

describe('loadConfig', () => {
  describe('defaults', () => {
    it('uses the documented default for every variable when the environment is empty', () => {
      expect(loadConfig({}, CWD)).toEqual({
        nodeEnv: 'development',
        port: 4000,
        host: '127.0.0.1',
        databaseUrl: undefined,
        dataDir: path.join(CWD, '.data'),
        embeddedPgPort: 0,
        jwtSecret: DEVELOPMENT_JWT_SECRET,
        jwtSecretIsDefault: true,
        jwtMaxLifetimeSeconds: 2_592_000,
        idempotency: {
          ttlSeconds: 86_400,
          tombstoneSeconds: 2_592_000,
          waitMs: 10_000,
          purgeIntervalSeconds: 300,
          encryptionKey: undefined,
          previousEncryptionKeys: [],
        },
        http: {
          requestTimeoutMs: 30_000,
          shutdownGraceMs: 10_000,
          mutationsPerMinute: 600,
          corsOrigins: [],
          explorer: 'graphiql',
          metricsToken: undefined,
        },
        statementTimeoutMs: 15_000,
        logLevel: 'info',
        seedDemoCatalog: true,
        events: { natsUrl: undefined, relayBatch: 100, relayPollMs: 200, retentionSeconds: 604_800 },
      });
    });

    it('treats empty strings as unset', () => {
      const empty = Object.fromEntries(
        [
          'NODE_ENV',
          'PORT',
          'HOST',
          'DATABASE_URL',
          'DATA_DIR',
          'EMBEDDED_PG_PORT',
          'JWT_SECRET',
          'IDEMPOTENCY_TTL_SECONDS',
          'IDEMPOTENCY_TOMBSTONE_SECONDS',
          'IDEMPOTENCY_WAIT_MS',
          'IDEMPOTENCY_PURGE_INTERVAL_SECONDS',
          'IDEMPOTENCY_ENCRYPTION_KEY',
          'IDEMPOTENCY_ENCRYPTION_PREVIOUS_KEYS',
          'REQUEST_TIMEOUT_MS',
          'SHUTDOWN_GRACE_MS',
          'RATE_LIMIT_MUTATIONS_PER_MINUTE',
          'CORS_ORIGINS',
          'GRAPHQL_EXPLORER',
          'STATEMENT_TIMEOUT_MS',
          'LOG_LEVEL',
          'JWT_MAX_LIFETIME_SECONDS',
          'METRICS_TOKEN',
          'SEED_DEMO_CATALOG',
          'NATS_URL',
          'EVENTS_RELAY_BATCH',
          'EVENTS_RELAY_POLL_MS',
          'EVENTS_RETENTION_SECONDS',
        ].map((name) => [name, '']),
      );
      expect(loadConfig(empty, CWD)).toEqual(loadConfig({}, CWD));
    });

    it('reads only the environment it is given, not process.env', () => {
      const saved = process.env.PORT;
      process.env.PORT = '1234';
      try {
        expect(loadConfig({}, CWD).port).toBe(4000);
      } finally {
        if (saved === undefined) delete process.env.PORT;
        else process.env.PORT = saved;
      }
    });

    it('reads every variable when set', () => {
      const config = loadConfig(
        {
          NODE_ENV: 'production',
          PORT: '8080',
          HOST: '0.0.0.0',
          DATABASE_URL: 'postgres://orders:secret@db:5432/orders',
          DATA_DIR: '/var/lib/orders',
          EMBEDDED_PG_PORT: '5433',
          JWT_SECRET: SECRET,
          IDEMPOTENCY_TTL_SECONDS: '3600',
          IDEMPOTENCY_TOMBSTONE_SECONDS: '0',
          IDEMPOTENCY_WAIT_MS: '2500',
          IDEMPOTENCY_PURGE_INTERVAL_SECONDS: '0',
          IDEMPOTENCY_ENCRYPTION_KEY: KEY.toString('base64'),
          REQUEST_TIMEOUT_MS: '5000',
          SHUTDOWN_GRACE_MS: '2000',
          RATE_LIMIT_MUTATIONS_PER_MINUTE: '30',
          CORS_ORIGINS: 'https://shop.example.com, http://localhost:3000',
          GRAPHQL_EXPLORER: 'true',
          STATEMENT_TIMEOUT_MS: '4000',
          LOG_LEVEL: 'warn',
          JWT_MAX_LIFETIME_SECONDS: '86400',
          METRICS_TOKEN: 'scrape-token-0123456789abcdef',
          SEED_DEMO_CATALOG: 'true',
          NATS_URL: 'nats://nats:4222',
          EVENTS_RELAY_BATCH: '50',
          EVENTS_RELAY_POLL_MS: '100',
          EVENTS_RETENTION_SECONDS: '3600',
        },
        CWD,
      );
      expect(config).toEqual({
        nodeEnv: 'production',
        port: 8080,
        host: '0.0.0.0',
        databaseUrl: 'postgres://orders:secret@db:5432/orders',
        dataDir: path.resolve('/var/lib/orders'),
        embeddedPgPort: 5433,
        jwtSecret: SECRET,
        jwtSecretIsDefault: false,
        jwtMaxLifetimeSeconds: 86_400,
        idempotency: {
          ttlSeconds: 3600,
          tombstoneSeconds: 0,
          waitMs: 2500,
          purgeIntervalSeconds: 0,
          encryptionKey: KEY,
          previousEncryptionKeys: [],
        },
        http: {
          requestTimeoutMs: 5000,
          shutdownGraceMs: 2000,
          mutationsPerMinute: 30,
          corsOrigins: ['https://shop.example.com', 'http://localhost:3000'],
          explorer: 'graphiql',
          metricsToken: 'scrape-token-0123456789abcdef',
        },
        statementTimeoutMs: 4000,
        logLevel: 'warn',
        seedDemoCatalog: true,
        events: { natsUrl: 'nats://nats:4222', relayBatch: 50, relayPollMs: 100, retentionSeconds: 3600 },
      });
    });
  });

  describe('ports', () => {
    it('rejects a PORT that is not a number, naming PORT and the value', () => {
      const error = configError({ PORT: 'abc' });
      expect(error).toBeInstanceOf(ConfigError);
      expect(error.variable).toBe('PORT');
      expect(error.message).toContain('PORT');
      expect(error.message).toContain('abc');
    });

    it.each(['-1', '1.5', '4e3', '0x10', ' 4000', '4000 '])('rejects PORT=%j as not a whole number', (value) => {
      expect(configError({ PORT: value }).variable).toBe('PORT');
    });

    it.each(['65536', '70000', '99999999999999999999'])('rejects the out-of-range PORT=%s', (value) => {
      const error = configError({ PORT: value });
      expect(error.variable).toBe('PORT');
      expect(error.message).toMatch(/between/);
    });

    it('accepts the highest port', () => {
      expect(loadConfig({ PORT: '65535' }, CWD).port).toBe(65535);
    });

    it.each(['abc', '65536'])('rejects EMBEDDED_PG_PORT=%s', (value) => {
      expect(configError({ EMBEDDED_PG_PORT: value }).variable).toBe('EMBEDDED_PG_PORT');
    });
  });

  describe('JWT_SECRET', () => {
    it('is required when NODE_ENV=production', () => {
      const error = configError({ NODE_ENV: 'production' });
      expect(error.variable).toBe('JWT_SECRET');
      expect(error.message).toMatch(/required/);
    });

    it('is accepted in production when set', () => {
      const config = loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET }, CWD);
      expect(config.jwtSecret).toBe(SECRET);
      expect(config.jwtSecretIsDefault).toBe(false);
    });

    it.each(['development', 'production', 'test'])('rejects a secret shorter than 32 bytes with NODE_ENV=%s', (nodeEnv) => {
      const error = configError({ NODE_ENV: nodeEnv, JWT_SECRET: 'x'.repeat(31) });
      expect(error.variable).toBe('JWT_SECRET');
    });

    it('accepts a secret of exactly 32 bytes', () => {
      expect(loadConfig({ JWT_SECRET: 'x'.repeat(32) }, CWD).jwtSecret).toBe('x'.repeat(32));
    });
  });

  describe('DATABASE_URL', () => {
    it.each(['postgres://user:pass@localhost:5432/orders', 'postgresql://user:pass@db/orders'])('accepts %s', (url) => {
      expect(loadConfig({ DATABASE_URL: url }, CWD).databaseUrl).toBe(url);
    });

    it.each([
      ['another scheme', 'mysql://user:pass@localhost:3306/orders'],
      ['no database name', 'postgres://user:pass@localhost:5432'],
      ['an empty database name', 'postgres://user:pass@localhost:5432/'],
      ['not a URL', 'localhost:5432/orders'],
      ['plain text', 'orders'],
    ])('rejects %s', (_case, url) => {
      expect(configError({ DATABASE_URL: url }).variable).toBe('DATABASE_URL');
    });
  });

  describe('IDEMPOTENCY_ENCRYPTION_KEY', () => {
    it('decodes a base64 key of 32 bytes', () => {
      expect(loadConfig({ IDEMPOTENCY_ENCRYPTION_KEY: KEY.toString('base64') }, CWD).idempotency.encryptionKey).toEqual(KEY);
    });

    it.each([
      ['16 bytes', Buffer.alloc(16, 1).toString('base64')],
      ['33 bytes', Buffer.alloc(33, 1).toString('base64')],
      ['not base64', 'not a base64 key, not even close!!'],
      ['hex of 32 bytes', Buffer.alloc(32, 1).toString('hex')],
    ])('rejects %s', (_case, value) => {
      expect(configError({ IDEMPOTENCY_ENCRYPTION_KEY: value }).variable).toBe('IDEMPOTENCY_ENCRYPTION_KEY');
    });
  });

  describe('IDEMPOTENCY_ENCRYPTION_PREVIOUS_KEYS', () => {
    it('decodes comma-separated base64 keys of 32 bytes, spaces allowed', () => {
      const other = Buffer.alloc(32, 7);
      const raw = `${KEY.toString('base64')}, ${other.toString('base64')}`;
      expect(loadConfig({ IDEMPOTENCY_ENCRYPTION_PREVIOUS_KEYS: raw }, CWD).idempotency.previousEncryptionKeys).toEqual([KEY, other]);
    });

    it('rejects a list with a key that is not 32 bytes of base64', () => {
      const raw = `${KEY.toString('base64')},${Buffer.alloc(16, 1).toString('base64')}`;
      expect(configError({ IDEMPOTENCY_ENCRYPTION_PREVIOUS_KEYS: raw }).variable).toBe('IDEMPOTENCY_ENCRYPTION_PREVIOUS_KEYS');
    });
  });

  describe('idempotency timings', () => {
    it.each([
      ['IDEMPOTENCY_TTL_SECONDS', '0'],
      ['IDEMPOTENCY_TTL_SECONDS', 'one day'],
      ['IDEMPOTENCY_TOMBSTONE_SECONDS', '-1'],
      ['IDEMPOTENCY_TOMBSTONE_SECONDS', '31536001'],
      ['IDEMPOTENCY_WAIT_MS', '-5'],
      ['IDEMPOTENCY_PURGE_INTERVAL_SECONDS', '5m'],
    ])('rejects %s=%s', (name, value) => {
      expect(configError({ [name]: value }).variable).toBe(name);
    });
  });

  describe('enumerations', () => {
    it.each(['verbose', 'INFO'])('rejects LOG_LEVEL=%s', (value) => {
      const error = configError({ LOG_LEVEL: value });
      expect(error.variable).toBe('LOG_LEVEL');
      expect(error.message).toContain(value);
    });

    it.each(['staging', 'prod'])('rejects NODE_ENV=%s', (value) => {
      expect(configError({ NODE_ENV: value }).variable).toBe('NODE_ENV');
    });

    it.each(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])('accepts LOG_LEVEL=%s', (level) => {
      expect(loadConfig({ LOG_LEVEL: level }, CWD).logLevel).toBe(level);
    });
  });

  describe('DATA_DIR', () => {
    it('resolves a relative directory against the working directory', () => {
      expect(loadConfig({ DATA_DIR: 'var/db' }, CWD).dataDir).toBe(path.join(CWD, 'var', 'db'));
      expect(loadConfig({ DATA_DIR: '../shared' }, CWD).dataDir).toBe(path.resolve(CWD, '..', 'shared'));
    });

    it('keeps an absolute directory as is', () => {
      expect(loadConfig({ DATA_DIR: path.resolve('/data/pg') }, path.resolve('/elsewhere')).dataDir).toBe(path.resolve('/data/pg'));
    });
  });

  describe('http hardening', () => {
    it('serves GraphiQL by default outside production, nothing in production, and lets GRAPHQL_EXPLORER choose', () => {
      expect(loadConfig({}, CWD).http.explorer).toBe('graphiql');
      expect(loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET }, CWD).http.explorer).toBe('off');
      expect(loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET, GRAPHQL_EXPLORER: 'sandbox' }, CWD).http.explorer).toBe('sandbox');
      expect(loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET, GRAPHQL_EXPLORER: 'true' }, CWD).http.explorer).toBe('graphiql');
      expect(loadConfig({ GRAPHQL_EXPLORER: 'false' }, CWD).http.explorer).toBe('off');
      expect(loadConfig({ GRAPHQL_EXPLORER: 'off' }, CWD).http.explorer).toBe('off');
    });

    it('rejects a GRAPHQL_EXPLORER that is not graphiql, sandbox, off or a boolean', () => {
      expect(configError({ GRAPHQL_EXPLORER: 'yes' }).variable).toBe('GRAPHQL_EXPLORER');
    });

    it('accepts * and exact origins in CORS_ORIGINS and rejects paths or garbage', () => {
      expect(loadConfig({ CORS_ORIGINS: '*' }, CWD).http.corsOrigins).toEqual(['*']);
      expect(configError({ CORS_ORIGINS: 'https://shop.example.com/path' }).variable).toBe('CORS_ORIGINS');
      expect(configError({ CORS_ORIGINS: 'not an origin' }).variable).toBe('CORS_ORIGINS');
    });

    it('rejects timeouts and limits out of range, naming the variable', () => {
      expect(configError({ REQUEST_TIMEOUT_MS: '10' }).variable).toBe('REQUEST_TIMEOUT_MS');
      expect(configError({ SHUTDOWN_GRACE_MS: '-1' }).variable).toBe('SHUTDOWN_GRACE_MS');
      expect(configError({ RATE_LIMIT_MUTATIONS_PER_MINUTE: 'lots' }).variable).toBe('RATE_LIMIT_MUTATIONS_PER_MINUTE');
      expect(configError({ STATEMENT_TIMEOUT_MS: '1e3' }).variable).toBe('STATEMENT_TIMEOUT_MS');
    });
  });

  describe('token lifetime, metrics access and the demo catalog', () => {
    it('bounds JWT_MAX_LIFETIME_SECONDS to a minute to a year, naming the variable', () => {
      expect(loadConfig({ JWT_MAX_LIFETIME_SECONDS: '3600' }, CWD).jwtMaxLifetimeSeconds).toBe(3600);
      expect(configError({ JWT_MAX_LIFETIME_SECONDS: '0' }).variable).toBe('JWT_MAX_LIFETIME_SECONDS');
      expect(configError({ JWT_MAX_LIFETIME_SECONDS: '31536001' }).variable).toBe('JWT_MAX_LIFETIME_SECONDS');
      expect(configError({ JWT_MAX_LIFETIME_SECONDS: '30d' }).variable).toBe('JWT_MAX_LIFETIME_SECONDS');
    });

    it('refuses a METRICS_TOKEN that is short or cannot travel in a bearer header', () => {
      expect(configError({ METRICS_TOKEN: 'short' }).message).toMatch(/at least 16 characters/);
      expect(configError({ METRICS_TOKEN: 'has spaces in it, quite a few' }).variable).toBe('METRICS_TOKEN');
    });

    it('seeds the demo catalog by default outside production only, and when SEED_DEMO_CATALOG says so', () => {
      expect(loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET }, CWD).seedDemoCatalog).toBe(false);
      expect(loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET, SEED_DEMO_CATALOG: 'true' }, CWD).seedDemoCatalog).toBe(true);
      expect(loadConfig({ NODE_ENV: 'development' }, CWD).seedDemoCatalog).toBe(true);
      expect(loadConfig({ SEED_DEMO_CATALOG: 'false' }, CWD).seedDemoCatalog).toBe(false);
      expect(configError({ SEED_DEMO_CATALOG: 'maybe' }).variable).toBe('SEED_DEMO_CATALOG');
    });
  });
});
