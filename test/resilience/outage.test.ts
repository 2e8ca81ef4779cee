import { type Cluster, createCluster } from '../support/cluster';
import { withClient } from '../support/database';
import { lockProducts, untilLockWaitersOn } from '../support/locks';
import {
  type CreateOrderResponse,
  createOrder,
  isServiceUnavailable,
  type Ledger,
  ledger,
  orderIdOf,
  productId,
  sleep,
} from '../support/orders-client';
import { type Exit, type ServerProcess, serverEnv, signalServer, startServer, stopAllServers, tokenFor } from '../support/processes';
import { codeOf } from '../support/responses';

// The database really goes away (fast shutdown: sessions terminated, open transactions rolled
// back, new connections refused) under a server taking a steady stream of orders, then comes
// back. Clients must get fast, retryable answers meanwhile (I9: transient failures store
// nothing), the server must recover by itself, and retrying every unanswered key must end with
// exactly one order per key.

const USER = 'outage-user';
const RATE_PER_SECOND = 10;
const CLIENT_TIMEOUT_MS = 8_000;
const FAIL_FAST_MS = 6_000;
const DOWN_MS = 2_000;
const READY_WITHIN_MS = 10_000;
/** Key of the order caught inside its transaction (blocked on a row lock) when the database stops. */
const IN_FLIGHT_KEY = 'outage-in-flight';

/** One request, with what the client saw. */
interface Attempt {
  readonly key: string;
  readonly productId: string;
  readonly sentAt: number;
  endedAt?: number;
  response?: CreateOrderResponse;
  error?: unknown;
}

function send(url: string, token: string, key: string, product: string): { attempt: Attempt; settled: Promise<void> } {
  const attempt: Attempt = { key, productId: product, sentAt: Date.now() };
  const settled = createOrder(url, token, key, product, CLIENT_TIMEOUT_MS).then(
    (response) => {
      attempt.endedAt = Date.now();
      attempt.response = response;
    },
    (error: unknown) => {
      attempt.endedAt = Date.now();
      attempt.error = error;
    },
  );
  return { attempt, settled };
}

/** Fires one createOrder per tick, each with a fresh key, until `stop` is called. */
function orderStream(url: string, token: string, product: string) {
  const attempts: Attempt[] = [];
  const pending: Promise<void>[] = [];
  const fire = () => {
    const { attempt, settled } = send(url, token, `outage-${attempts.length}`, product);
    attempts.push(attempt);
    pending.push(settled);
  };
  const timer = setInterval(fire, 1000 / RATE_PER_SECOND);
  fire();
  return {
    /** How many requests were sent at or after `at`. */
    sentSince: (at: number) => attempts.filter((attempt) => attempt.sentAt >= at).length,
    /** Stops firing and waits for every request sent to settle. */
    stop: async () => {
      clearInterval(timer);
      await Promise.all(pending);
      return attempts;
    },
  };
}

function succeeded(attempt: Attempt): boolean {
  return attempt.response !== undefined && orderIdOf(attempt.response) !== undefined;
}

function unavailable(attempt: Attempt): boolean {
  return attempt.response !== undefined && isServiceUnavailable(attempt.response);
}

function tookMs(attempt: Attempt): number {
  return (attempt.endedAt ?? Number.POSITIVE_INFINITY) - attempt.sentAt;
}

function describeAttempt(attempt: Attempt): string {
  const seen = attempt.response ? `${attempt.response.status} ${JSON.stringify(attempt.response.body)}` : String(attempt.error);
  return `${attempt.key} (${tookMs(attempt)} ms): ${seen}`;
}

async function status(url: string): Promise<number> {
  return (await fetch(url, { signal: AbortSignal.timeout(5_000) })).status;
}

/** Milliseconds until `url` answers 200 (polled), or undefined past `timeoutMs`. */
async function msUntil200(url: string, timeoutMs: number): Promise<number | undefined> {
  const started = Date.now();
  while (Date.now() - started <= timeoutMs) {
    if ((await status(url).catch(() => 0)) === 200) return Date.now() - started;
    await sleep(100);
  }
  return undefined;
}

/** What the scenario observed; the tests below each judge one part of it. */
interface Observed {
  stream: Attempt[];
  inFlight: Attempt;
  stoppedAt: number;
  restartBegan: number;
  readyAt: number;
  probesWhileDown: { readyz: number[]; healthz: number[] };
  serverExitedDuringOutage: boolean;
  readyAfterMs: number | undefined;
  /** key -> order id, from the first success of each key (stream or retry). */
  acknowledged: Map<string, string>;
  /** Keys still without an order after the retries. */
  neverSucceeded: string[];
  before: { pen: Ledger; notebook: Ledger };
  after: { pen: Ledger; notebook: Ledger };
}

describe('the database stops and restarts under a steady stream of orders', () => {
  let cluster: Cluster | undefined;
  let server: ServerProcess | undefined;
  let observed: Observed;

  beforeAll(async () => {
    cluster = await createCluster();
    await cluster.start();
    await withClient(cluster.url(), (client) => client.query('create database orders'));
    const databaseUrl = cluster.url('orders');
    const api = await startServer(serverEnv(databaseUrl));
    server = api;
    let serverExited = false;
    void api.exited.then(() => {
      serverExited = true;
    });
    const origin = new URL(api.url).origin;
    const token = await tokenFor(USER);
    const pen = await productId(databaseUrl, 'PEN-001');
    const notebook = await productId(databaseUrl, 'NB-001');
    const before = { pen: await ledger(databaseUrl, USER, pen), notebook: await ledger(databaseUrl, USER, notebook) };

    const stream = orderStream(api.url, token, pen);
    await sleep(1_000);
    const releaseLock = await lockProducts(databaseUrl, [notebook]);
    const inFlight = send(api.url, token, IN_FLIGHT_KEY, notebook);
    await untilLockWaitersOn(databaseUrl);

    await cluster.stop();
    const stoppedAt = Date.now();
    // The stop ended the lock's session: the release can only report that.
    void releaseLock().catch(() => {});
    const probesWhileDown = { readyz: [] as number[], healthz: [] as number[] };
    // At least DOWN_MS, and long enough for the stream to send over a dozen orders into the outage even
    // when a loaded machine delays its timer.
    while (Date.now() - stoppedAt < DOWN_MS || stream.sentSince(stoppedAt) < 14) {
      probesWhileDown.readyz.push(await status(`${origin}/readyz`));
      probesWhileDown.healthz.push(await status(`${origin}/healthz`));
      await sleep(250);
    }
    const serverExitedDuringOutage = serverExited;
    const restartBegan = Date.now();
    await cluster.start();
    const readyAfterMs = await msUntil200(`${origin}/readyz`, READY_WITHIN_MS);
    const readyAt = Date.now();
    await sleep(1_500);
    const attempts = await stream.stop();
    await inFlight.settled;

    // A client retries every key it got no order for, with the same payload, until it gets one.
    const acknowledged = new Map<string, string>();
    const neverSucceeded: string[] = [];
    for (const attempt of [...attempts, inFlight.attempt]) {
      let id = attempt.response && orderIdOf(attempt.response);
      for (let tries = 0; !id && tries < 20; tries++) {
        if (tries > 0) await sleep(200);
        const retry = await createOrder(api.url, token, attempt.key, attempt.productId).catch(() => undefined);
        id = retry && orderIdOf(retry);
      }
      if (id) acknowledged.set(attempt.key, id);
      else neverSucceeded.push(attempt.key);
    }

    observed = {
      stream: attempts,
      inFlight: inFlight.attempt,
      stoppedAt,
      restartBegan,
      readyAt,
      probesWhileDown,
      serverExitedDuringOutage,
      readyAfterMs,
      acknowledged,
      neverSucceeded,
      before,
      after: { pen: await ledger(databaseUrl, USER, pen), notebook: await ledger(databaseUrl, USER, notebook) },
    };
  }, 60_000);

  afterAll(async () => {
    await stopAllServers();
    await cluster?.destroy();
  });

  it('stays alive while the database is down: /healthz 200, /readyz 503', () => {
    expect(observed.serverExitedDuringOutage).toBe(false);
    expect(observed.probesWhileDown.readyz.length).toBeGreaterThan(0);
    expect(new Set(observed.probesWhileDown.readyz)).toEqual(new Set([503]));
    expect(new Set(observed.probesWhileDown.healthz)).toEqual(new Set([200]));
  });

  it('answers orders sent while the database is down with SERVICE_UNAVAILABLE within seconds', () => {
    // A margin before the restart: a request racing it may legitimately succeed.
    const whileDown = observed.stream.filter(
      (attempt) => attempt.sentAt >= observed.stoppedAt && attempt.sentAt < observed.restartBegan - 200,
    );
    expect(whileDown.length).toBeGreaterThanOrEqual(10);
    expect(whileDown.filter((attempt) => !unavailable(attempt) || tookMs(attempt) > FAIL_FAST_MS).map(describeAttempt)).toEqual([]);
  });

  it('answers an order whose transaction the shutdown killed with SERVICE_UNAVAILABLE', () => {
    const { inFlight } = observed;
    expect(inFlight.response && codeOf(inFlight.response)).toBe('SERVICE_UNAVAILABLE');
    expect(tookMs(inFlight)).toBeLessThan(FAIL_FAST_MS);
  });

  it('never masks the outage: every answer is an order or SERVICE_UNAVAILABLE', () => {
    const unexpected = observed.stream.filter((attempt) => !succeeded(attempt) && !unavailable(attempt));
    expect(unexpected.map(describeAttempt)).toEqual([]);
  });

  it('is ready again within 10 s of the restart and then serves every order', () => {
    expect(observed.readyAfterMs).toBeDefined();
    const afterRecovery = observed.stream.filter((attempt) => attempt.sentAt >= observed.readyAt);
    expect(afterRecovery.length).toBeGreaterThanOrEqual(5);
    expect(afterRecovery.filter((attempt) => !succeeded(attempt)).map(describeAttempt)).toEqual([]);
  });

  it('ends with exactly one order per key, each record pointing at it, once unanswered keys are retried', () => {
    const { acknowledged, after, before } = observed;
    const keys = [...observed.stream, observed.inFlight].map((attempt) => attempt.key);
    // The outage really cost answers, or the retries prove nothing.
    expect(observed.stream.filter(succeeded).length).toBeLessThan(observed.stream.length);
    expect(observed.neverSucceeded).toEqual([]);
    expect(new Set(acknowledged.values()).size).toBe(keys.length);
    expect(after.pen.orderIds).toEqual([...acknowledged.values()].sort());
    expect(after.pen.records).toEqual(Object.fromEntries(acknowledged));
    expect(after.pen.orphanOrders).toBe(0);
    expect(before.pen.stock - after.pen.stock).toBe(observed.stream.length);
    expect(before.notebook.stock - after.notebook.stock).toBe(1);
  });

  it('still shuts down cleanly on SIGTERM after the outage', async () => {
    const exit: Exit = await signalServer(server as ServerProcess, 'SIGTERM');
    expect(exit).toEqual({ code: 0, signal: null });
  });
});
