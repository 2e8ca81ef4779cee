import { setTimeout as delay } from 'node:timers/promises';
import { ExpiringLruCache } from './cache';
import { bindingOf, type ResultCodec, type StoredResult, UnreadableResultError } from './codec';
import {
  type DomainFailure,
  IdempotencyError,
  IdempotencyErrorCode,
  type IdempotencyMarker,
  keyExpired,
  keyReused,
  markerOf,
  recordUnreadable,
  requestInProgress,
  storedFailure,
} from './errors';
import { fingerprint as fingerprintOf } from './fingerprint';
import { type IdempotencyObserver, ObservedOutcome } from './observer';
import { type CreatedResource, type Found, type NewRecord, Outcome, type RecordStore, type StoredRecord, type Tombstone } from './store';

export interface HandlerOptions<Db> {
  readonly store: RecordStore<Db>;
  readonly codec: ResultCodec;
  readonly ttlSeconds: number;
  /** How long a record's tombstone lives after its result expires; 0: none. */
  readonly tombstoneSeconds: number;
  /** How long a duplicate waits for the first request with its key, here or in another process. */
  readonly waitMs: number;
  /** Finished records kept in memory for replays; 0 turns the cache off. */
  readonly cacheSize: number;
  readonly observer: IdempotencyObserver;
  /** The stored form of an error the mutation threw, or undefined when it is not a domain failure. */
  readonly domainFailure: (error: unknown) => DomainFailure | undefined;
}

/** One call of an idempotent field. */
export interface Execution<Db> {
  readonly operation: string;
  /** Coerced field arguments without the key. */
  readonly args: Readonly<Record<string, unknown>>;
  /** Whose record this is (the user id). */
  readonly scope: string;
  readonly key: string;
  /** Response path of the field, for the marker. */
  readonly path: readonly (string | number)[];
  readonly db: Db;
  readonly ttlSeconds?: number;
  readonly tombstoneSeconds?: number;
  /** The resources a payload names as created, kept in the record's tombstone. */
  readonly resources?: (payload: unknown) => readonly CreatedResource[];
  /** Runs the mutation in the engine's transaction and returns plain payload data. */
  readonly run: (tx: Db) => Promise<unknown>;
}

export interface Completed {
  readonly value: unknown;
  readonly marker: IdempotencyMarker;
}

/** How an attempt at a key ended; {@link IdempotencyHandler.answer} turns each into the field's answer. */
type Attempt =
  | { readonly kind: 'executed'; readonly record: StoredRecord; readonly value: unknown; readonly replacedExpired: boolean }
  | { readonly kind: 'failed'; readonly record: StoredRecord; readonly failure: DomainFailure }
  | { readonly kind: 'found'; readonly record: Replayable }
  | { readonly kind: 'expired'; readonly tombstone: Tombstone }
  | { readonly kind: 'busy' };

/** What the engine's transaction decided, before the failure (if any) is recorded. */
/** A finished record with its result decoded once; null when it cannot be read. */
type Replayable = StoredRecord & { readonly stored: StoredResult | null };

type Ran = Attempt | { readonly kind: 'taken' } | { readonly kind: 'domain-failure'; readonly failure: DomainFailure };

/**
 * The lifecycle of an idempotent mutation. A live record is replayed (from memory, else one
 * primary-key read); a tombstone is answered IDEMPOTENCY_KEY_EXPIRED. Otherwise the mutation
 * runs in a transaction that also writes its record; the record's primary key, which a
 * tombstone keeps, arbitrates between processes. Duplicates within one process wait on the
 * first request's promise, so at most one of them waits in the database.
 */
export class IdempotencyHandler<Db> {
  private readonly cache: ExpiringLruCache<Replayable>;
  private readonly retryAfterSeconds: number;
  private readonly inFlight = new Map<string, Promise<unknown>>();

  constructor(private readonly options: HandlerOptions<Db>) {
    this.cache = new ExpiringLruCache(options.cacheSize);
    this.retryAfterSeconds = Math.max(1, Math.ceil(options.waitMs / 1000));
  }

  get observer(): IdempotencyObserver {
    return this.options.observer;
  }

  /** Executes once per (scope, key), or replays; throws the stored or replayed failure. */
  async execute(execution: Execution<Db>): Promise<Completed> {
    const started = performance.now();
    const fingerprint = fingerprintOf(execution.operation, execution.args);
    try {
      const { outcome, mutationMs } = await this.settle(execution, fingerprint);
      this.observer.overhead(execution.operation, (performance.now() - started - mutationMs) / 1000);
      return this.answer(outcome, execution, fingerprint);
    } catch (error) {
      const code = error instanceof IdempotencyError ? error.code : undefined;
      if (code === IdempotencyErrorCode.KeyReused) this.observer.outcome(execution.operation, ObservedOutcome.ReusedRejected);
      if (code === IdempotencyErrorCode.RequestInProgress) this.observer.outcome(execution.operation, ObservedOutcome.InProgressRejected);
      if (code === IdempotencyErrorCode.KeyExpired) this.observer.outcome(execution.operation, ObservedOutcome.ExpiredRejected);
      throw error;
    }
  }

  /** A finished record from memory, after the first request with the key here, or from an attempt of its own. */
  private async settle(execution: Execution<Db>, fingerprint: Buffer): Promise<{ outcome: Attempt; mutationMs: number }> {
    const id = `${execution.scope}\u0000${execution.key}`;
    const deadline = Date.now() + this.options.waitMs;
    for (;;) {
      const cached = this.cache.get(id);
      if (cached) return { outcome: { kind: 'found', record: cached }, mutationMs: 0 };
      const running = this.inFlight.get(id);
      if (!running) break;
      await this.waitFor(running, deadline, execution.key);
    }
    const attempt = this.attempt(execution, fingerprint);
    this.inFlight.set(
      id,
      attempt.catch(() => undefined),
    );
    const settled = await attempt.finally(() => this.inFlight.delete(id));
    const { outcome } = settled;
    // Only replayable records are kept: a late retry is rare, and its tombstone is read again.
    if (outcome.kind === 'found') this.cache.set(id, outcome.record);
    if (outcome.kind === 'executed') this.cache.set(id, { ...outcome.record, stored: { kind: 'payload', payload: outcome.value } });
    if (outcome.kind === 'failed') this.cache.set(id, { ...outcome.record, stored: { kind: 'error', ...outcome.failure } });
    return settled;
  }

  /** The live record of the key, else one execution in a transaction with its record. */
  private async attempt(execution: Execution<Db>, fingerprint: Buffer): Promise<{ outcome: Attempt; mutationMs: number }> {
    const { store, waitMs } = this.options;
    const found = await store.find(execution.db, execution.scope, execution.key);
    if (found) return { outcome: this.attemptOf(found), mutationMs: 0 };
    const started = performance.now();
    const ran = await store.transaction(execution.db, waitMs, (tx) => this.runAndRecord(execution, fingerprint, tx));
    const mutationMs = performance.now() - started;
    switch (ran.kind) {
      case 'taken':
        return { outcome: await this.winner(execution), mutationMs };
      case 'domain-failure':
        return { outcome: await this.recordFailure(execution, fingerprint, ran.failure), mutationMs };
      default:
        return { outcome: ran, mutationMs };
    }
  }

  /** Runs the mutation and writes its record; commits only when the record was written. */
  private async runAndRecord(execution: Execution<Db>, fingerprint: Buffer, tx: Db): Promise<{ commit: boolean; value: Ran }> {
    const ran = await execution.run(tx).then(
      (value) => ({ ok: true as const, json: JSON.stringify(value ?? null) }),
      (error: unknown) => {
        const failure = this.options.domainFailure(error);
        if (!failure) throw error;
        return { ok: false as const, failure };
      },
    );
    // A domain failure rolls the mutation's writes back; its record is written on its own.
    if (!ran.ok) return { commit: false, value: { kind: 'domain-failure', failure: ran.failure } };
    // The payload's JSON is built once, for the record and for the answer.
    const value: unknown = JSON.parse(ran.json);
    const resources = execution.resources?.(value) ?? [];
    const record = this.newRecord(execution, fingerprint, Outcome.Succeeded, `{"kind":"payload","payload":${ran.json}}`, resources);
    const written = await this.options.store.write(tx, record);
    if (written.kind !== 'written') return { commit: false, value: written };
    return { commit: true, value: { kind: 'executed', record: written.record, value, replacedExpired: written.replacedExpired } };
  }

  private async recordFailure(execution: Execution<Db>, fingerprint: Buffer, failure: DomainFailure): Promise<Attempt> {
    const stored: StoredResult = { kind: 'error', code: failure.code, message: failure.message, details: { ...failure.details } };
    const record = this.newRecord(execution, fingerprint, Outcome.Failed, JSON.stringify(stored), []);
    const written = await this.options.store.transaction(execution.db, this.options.waitMs, async (tx) => {
      const result = await this.options.store.write(tx, record);
      return { commit: result.kind === 'written', value: result };
    });
    switch (written.kind) {
      case 'written':
        return { kind: 'failed', record: written.record, failure };
      case 'taken':
        return this.winner(execution);
      case 'busy':
        return written;
      default:
        return unreachable(written);
    }
  }

  /** Another transaction wrote the key first: its record, or what remains of it, is the answer. */
  private async winner(execution: Execution<Db>): Promise<Attempt> {
    const found = await this.options.store.find(execution.db, execution.scope, execution.key);
    return found ? this.attemptOf(found) : { kind: 'busy' };
  }

  private attemptOf(found: Found): Attempt {
    switch (found.kind) {
      case 'live':
        return { kind: 'found', record: { ...found.record, stored: this.decode(found.record) } };
      case 'expired':
        return found;
      default:
        return unreachable(found);
    }
  }

  private answer(attempt: Attempt, execution: Execution<Db>, fingerprint: Buffer): Completed {
    switch (attempt.kind) {
      case 'executed':
        this.observer.outcome(execution.operation, attempt.replacedExpired ? ObservedOutcome.ExpiredReexecuted : ObservedOutcome.Executed);
        return { value: attempt.value, marker: markerOf(attempt.record, execution, false) };
      case 'failed':
        this.observer.outcome(execution.operation, ObservedOutcome.FailureStored);
        throw storedFailure(attempt.failure, markerOf(attempt.record, execution, false));
      case 'found':
        return this.replay(attempt.record, execution, fingerprint);
      case 'expired':
        if (!sameRequest(attempt.tombstone, execution, fingerprint)) throw keyReused(execution.key);
        throw keyExpired(execution.key, attempt.tombstone.resources, markerOf(attempt.tombstone, execution, false));
      case 'busy':
        throw requestInProgress(execution.key, this.retryAfterSeconds);
      default:
        return unreachable(attempt);
    }
  }

  private replay(record: Replayable, execution: Execution<Db>, fingerprint: Buffer): Completed {
    if (!sameRequest(record, execution, fingerprint)) throw keyReused(execution.key);
    const marker = markerOf(record, execution, true);
    const result = record.stored;
    if (!result) throw recordUnreadable(record.key, marker);
    this.observer.outcome(execution.operation, ObservedOutcome.Replayed);
    if (result.kind === 'error') throw storedFailure(result, marker);
    return { value: result.payload, marker };
  }

  private decode(record: StoredRecord): StoredResult | null {
    try {
      return this.options.codec.decode(record, bindingOf(record.scope, record.key, record.fingerprint));
    } catch (error) {
      if (error instanceof UnreadableResultError) return null;
      throw error;
    }
  }

  private newRecord(
    execution: Execution<Db>,
    fingerprint: Buffer,
    outcome: Outcome,
    json: string,
    resources: readonly CreatedResource[],
  ): NewRecord {
    const { scope, key, operation } = execution;
    return {
      scope,
      key,
      operation,
      fingerprint,
      outcome,
      resources,
      ...this.options.codec.encode(json, bindingOf(scope, key, fingerprint)),
      ttlSeconds: execution.ttlSeconds ?? this.options.ttlSeconds,
      tombstoneSeconds: execution.tombstoneSeconds ?? this.options.tombstoneSeconds,
    };
  }

  /** Waits for the first request with the key to settle, until the duplicate's deadline. */
  private async waitFor(running: Promise<unknown>, deadline: number, key: string): Promise<void> {
    const started = performance.now();
    const timer = new AbortController();
    try {
      const remaining = deadline - Date.now();
      const settled = remaining > 0 && (await Promise.race([running.then(() => true), delay(remaining, false, { signal: timer.signal })]));
      if (!settled) throw requestInProgress(key, this.retryAfterSeconds);
    } finally {
      timer.abort();
      this.observer.waited((performance.now() - started) / 1000);
    }
  }
}

/** Same operation and arguments as the first execution. */
function sameRequest(first: Tombstone, execution: Pick<Execution<unknown>, 'operation'>, fingerprint: Buffer): boolean {
  return first.operation === execution.operation && first.fingerprint.equals(fingerprint);
}

function unreachable(value: never): never {
  throw new Error(`unexpected outcome ${JSON.stringify(value)}`);
}
