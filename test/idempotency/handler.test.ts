import { randomBytes } from 'node:crypto';
import { ResultCodec } from '../../src/idempotency/codec';
import { IdempotencyError } from '../../src/idempotency/errors';
import { type Execution, IdempotencyHandler } from '../../src/idempotency/handler';
import type { IdempotencyObserver, ObservedOutcome } from '../../src/idempotency/observer';
import { Outcome } from '../../src/idempotency/store';
import { MemoryRecordStore, type MemoryTx } from './memory-store';

/** A domain failure as the host defines it: deterministic, so stored and replayed. */
class OutOfStock extends Error {
  readonly code = 'INSUFFICIENT_STOCK';
}

function gate(): { opened: Promise<void>; open(): void } {
  const controller = new AbortController();
  const opened = new Promise<void>((resolve) => controller.signal.addEventListener('abort', () => resolve()));
  return { opened, open: () => controller.abort() };
}

interface Setup {
  readonly store?: MemoryRecordStore;
  readonly codec?: ResultCodec;
  readonly waitMs?: number;
  readonly cacheSize?: number;
  readonly ttlSeconds?: number;
  readonly tombstoneSeconds?: number;
}

function handlerOf({
  store = new MemoryRecordStore(),
  codec = new ResultCodec(),
  waitMs = 5_000,
  cacheSize = 100,
  ttlSeconds = 60,
  tombstoneSeconds = 120,
}: Setup = {}) {
  const outcomes: ObservedOutcome[] = [];
  const observer: IdempotencyObserver = { outcome: (_operation, outcome) => outcomes.push(outcome), waited: () => {}, overhead: () => {} };
  const handler = new IdempotencyHandler<MemoryTx | null>({
    store,
    codec,
    ttlSeconds,
    tombstoneSeconds,
    waitMs,
    cacheSize,
    observer,
    domainFailure: (error) =>
      error instanceof OutOfStock ? { code: error.code, message: error.message, details: { sku: 'A' } } : undefined,
  });
  return { handler, store, outcomes };
}

/** A call of createOrder; `body` is the mutation, counted in `runs`. */
function call(key: string, body: () => Promise<unknown> = async () => ({ order: { id: 'o-1' } }), quantity = 1) {
  const runs = { count: 0 };
  const execution: Execution<MemoryTx | null> = {
    operation: 'createOrder',
    args: { input: { quantity } },
    scope: 'alice',
    key,
    path: ['createOrder'],
    db: null,
    resources: (payload) => [{ type: 'Order', id: (payload as { order: { id: string } }).order.id }],
    run: async () => {
      runs.count++;
      return body();
    },
  };
  return { execution, runs };
}

async function rejection(promise: Promise<unknown>): Promise<IdempotencyError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!(error instanceof IdempotencyError)) throw new Error(`expected an IdempotencyError, got ${String(error)}`);
  return error;
}

describe('IdempotencyHandler (in-memory store)', () => {
  it('executes a first call once and stores its payload as JSON', async () => {
    const { handler, store, outcomes } = handlerOf();
    const { execution, runs } = call('k');
    const completed = await handler.execute(execution);
    expect(completed.value).toEqual({ order: { id: 'o-1' } });
    expect(completed.marker).toMatchObject({ key: 'k', replayed: false, path: ['createOrder'] });
    expect(runs.count).toBe(1);
    const [record] = store.records.values();
    expect(record).toMatchObject({ outcome: Outcome.Succeeded, format: 1 });
    expect(JSON.parse(record!.result!.toString())).toEqual({ kind: 'payload', payload: { order: { id: 'o-1' } } });
    expect(outcomes).toEqual(['executed']);
  });

  it.each([
    ['from its cache', 100],
    ['from the store', 0],
  ])('replays %s without executing again', async (_where, cacheSize) => {
    const { handler, outcomes } = handlerOf({ cacheSize });
    const first = await handler.execute(call('k').execution);
    const retry = call('k', async () => ({ order: { id: 'o-2' } }));
    const replayed = await handler.execute(retry.execution);
    expect(retry.runs.count).toBe(0);
    expect(replayed).toEqual({ value: first.value, marker: { ...first.marker, replayed: true } });
    expect(outcomes).toEqual(['executed', 'replayed']);
  });

  it('rejects a key reused with other arguments, executing nothing', async () => {
    const { handler, outcomes } = handlerOf();
    await handler.execute(call('k').execution);
    const other = call('k', undefined, 2);
    expect((await rejection(handler.execute(other.execution))).code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(other.runs.count).toBe(0);
    expect(outcomes).toEqual(['executed', 'reused_rejected']);
  });

  it('serves a duplicate that waits for the first call in the same process', async () => {
    const { handler } = handlerOf();
    const release = gate();
    const first = call('k', async () => {
      await release.opened;
      return { order: { id: 'o-1' } };
    });
    const duplicate = call('k');
    const answers = [handler.execute(first.execution), handler.execute(duplicate.execution)];
    release.open();
    const [a, b] = await Promise.all(answers);
    expect([first.runs.count, duplicate.runs.count]).toEqual([1, 0]);
    expect(b).toEqual({ value: a?.value, marker: { ...a?.marker, replayed: true } });
  });

  it('answers a duplicate IDEMPOTENCY_REQUEST_IN_PROGRESS when the first call outlasts the wait', async () => {
    const { handler } = handlerOf({ waitMs: 50 });
    const release = gate();
    const first = handler.execute(call('k', () => release.opened.then(() => ({ order: { id: 'o-1' } }))).execution);
    const duplicate = call('k');
    const error = await rejection(handler.execute(duplicate.execution));
    release.open();
    await first;
    expect(error.code).toBe('IDEMPOTENCY_REQUEST_IN_PROGRESS');
    expect(error.details).toEqual({ retryAfterSeconds: 1 });
    expect(duplicate.runs.count).toBe(0);
  });

  it('replays the winner when another process committed the key first, its own work rolled back', async () => {
    const store = new MemoryRecordStore();
    const [here, there] = [handlerOf({ store }), handlerOf({ store })];
    const release = gate();
    const losing = call('k', async () => {
      await release.opened;
      return { order: { id: 'lost' } };
    });
    const answer = here.handler.execute(losing.execution);
    const won = await there.handler.execute(call('k', async () => ({ order: { id: 'won' } })).execution);
    release.open();
    const replayed = await answer;
    expect(losing.runs.count).toBe(1);
    expect(replayed).toEqual({ value: won.value, marker: { ...won.marker, replayed: true } });
    expect(store.records.size).toBe(1);
  });

  it('answers IDEMPOTENCY_REQUEST_IN_PROGRESS, storing nothing, while another process holds the key past the wait', async () => {
    const { handler, store } = handlerOf({ waitMs: 50 });
    const [release, holding] = [gate(), gate()];
    const holder = store.transaction(null, 5_000, async (tx) => {
      await store.write(tx, heldRecord());
      holding.open();
      await release.opened;
      return { commit: false, value: undefined };
    });
    await holding.opened;
    const error = await rejection(handler.execute(call('k').execution));
    release.open();
    await holder;
    expect(error.code).toBe('IDEMPOTENCY_REQUEST_IN_PROGRESS');
    expect(store.records.size).toBe(0);
  });

  it('stores a domain failure and replays it with its code, executing once', async () => {
    const { handler, store, outcomes } = handlerOf();
    const failing = call('k', async () => {
      throw new OutOfStock('Insufficient stock for product A');
    });
    const first = await rejection(handler.execute(failing.execution));
    const retry = await rejection(handler.execute(call('k').execution));
    expect(first).toMatchObject({ code: 'INSUFFICIENT_STOCK', message: 'Insufficient stock for product A', details: { sku: 'A' } });
    expect(first.marker?.replayed).toBe(false);
    expect(retry).toMatchObject({ code: 'INSUFFICIENT_STOCK', details: { sku: 'A' } });
    expect(retry.marker?.replayed).toBe(true);
    expect(failing.runs.count).toBe(1);
    expect([...store.records.values()].map((record) => record.outcome)).toEqual([Outcome.Failed]);
    expect(outcomes).toEqual(['failure_stored', 'replayed']);
  });

  it('stores nothing for a transient failure, so a retry executes', async () => {
    const { handler, store } = handlerOf();
    await expect(handler.execute(call('k', () => Promise.reject(new Error('connection lost'))).execution)).rejects.toThrow(
      'connection lost',
    );
    expect(store.records.size).toBe(0);
    const retry = call('k');
    await handler.execute(retry.execution);
    expect(retry.runs.count).toBe(1);
  });

  it('answers a retry after expiry IDEMPOTENCY_KEY_EXPIRED with the first execution and its resources, executing nothing', async () => {
    let now = Date.now();
    // The cache keeps time by the process clock; this store's clock is the test's.
    const { handler, outcomes } = handlerOf({ store: new MemoryRecordStore(() => now), cacheSize: 0 });
    const first = await handler.execute(call('k').execution);
    now += 60_000;
    const late = call('k', async () => ({ order: { id: 'o-2' } }));
    const error = await rejection(handler.execute(late.execution));
    expect(error).toMatchObject({
      code: 'IDEMPOTENCY_KEY_EXPIRED',
      details: { retryable: false, firstExecutedAt: first.marker.firstExecutedAt, resources: [{ type: 'Order', id: 'o-1' }] },
    });
    expect(error.marker).toEqual({ ...first.marker, replayed: false });
    expect(Date.parse(first.marker.forgottenAt) - Date.parse(first.marker.expiresAt)).toBe(120_000);
    expect(late.runs.count).toBe(0);
    expect(outcomes).toEqual(['executed', 'expired_rejected']);
  });

  it('answers IDEMPOTENCY_KEY_REUSED to other arguments with a key in its tombstone', async () => {
    let now = Date.now();
    const { handler } = handlerOf({ store: new MemoryRecordStore(() => now), cacheSize: 0 });
    await handler.execute(call('k').execution);
    now += 61_000;
    const other = call('k', undefined, 2);
    expect((await rejection(handler.execute(other.execution))).code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(other.runs.count).toBe(0);
  });

  it('keeps the windows a record was written with when the settings change', async () => {
    let now = Date.now();
    const store = new MemoryRecordStore(() => now);
    await handlerOf({ store, ttlSeconds: 60, tombstoneSeconds: 120 }).handler.execute(call('k').execution);
    const changed = handlerOf({ store, ttlSeconds: 10, tombstoneSeconds: 0, cacheSize: 0 });
    now += 30_000;
    expect((await changed.handler.execute(call('k').execution)).marker.replayed).toBe(true);
    now += 60_000;
    expect((await rejection(changed.handler.execute(call('k').execution))).code).toBe('IDEMPOTENCY_KEY_EXPIRED');
    const later = await changed.handler.execute(call('k2').execution);
    expect(Date.parse(later.marker.expiresAt) - Date.parse(later.marker.firstExecutedAt)).toBe(10_000);
    expect(later.marker.forgottenAt).toBe(later.marker.expiresAt);
  });

  it('takes per-mutation windows over the handler settings, 0 turning the tombstone off', async () => {
    let now = Date.now();
    const { handler } = handlerOf({ store: new MemoryRecordStore(() => now), cacheSize: 0 });
    const first = await handler.execute({ ...call('k').execution, ttlSeconds: 5, tombstoneSeconds: 0 });
    expect(Date.parse(first.marker.forgottenAt) - Date.parse(first.marker.firstExecutedAt)).toBe(5_000);
    now += 5_000;
    const again = call('k', async () => ({ order: { id: 'o-2' } }));
    expect((await handler.execute(again.execution)).value).toEqual({ order: { id: 'o-2' } });
    expect(again.runs.count).toBe(1);
  });

  it('executes a key again once its tombstone ended, replacing its record', async () => {
    let now = Date.now();
    const { handler, store, outcomes } = handlerOf({ store: new MemoryRecordStore(() => now), cacheSize: 0 });
    await handler.execute(call('k').execution);
    now += 180_000;
    const again = call('k', async () => ({ order: { id: 'o-2' } }), 2);
    expect((await handler.execute(again.execution)).value).toEqual({ order: { id: 'o-2' } });
    expect(again.runs.count).toBe(1);
    expect(store.records.size).toBe(1);
    expect(outcomes).toEqual(['executed', 'expired_reexecuted']);
  });

  it('answers IDEMPOTENCY_RECORD_UNREADABLE with the marker for a record it cannot decrypt, and never executes it again', async () => {
    const store = new MemoryRecordStore();
    await handlerOf({ store, codec: new ResultCodec(randomBytes(32)) }).handler.execute(call('k').execution);
    const { handler } = handlerOf({ store, codec: new ResultCodec(randomBytes(32)) });
    for (let attempt = 0; attempt < 2; attempt++) {
      const retry = call('k');
      const error = await rejection(handler.execute(retry.execution));
      expect(error).toMatchObject({ code: 'IDEMPOTENCY_RECORD_UNREADABLE', details: { retryable: false } });
      expect(error.marker).toMatchObject({ key: 'k', replayed: true });
      expect(retry.runs.count).toBe(0);
    }
  });
});

/** A record of key `k`, for a transaction the test holds open. */
function heldRecord() {
  return {
    scope: 'alice',
    key: 'k',
    operation: 'createOrder',
    fingerprint: Buffer.alloc(32),
    outcome: Outcome.Succeeded,
    format: 1,
    keyId: null,
    result: Buffer.from('{"kind":"payload","payload":null}'),
    resources: [],
    ttlSeconds: 60,
    tombstoneSeconds: 0,
  };
}
