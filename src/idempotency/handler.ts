import { setTimeout as delay } from 'node:timers/promises';
import { ExpiringLruCache, unpooled } from './cache';
import { bindingOf, type ResultCodec, type StoredResult } from './codec';
import {
  type DomainFailure,
  type IdempotencyError,
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
import { type CreatedResource, type Found, Outcome, type RecordStore, type StoredRecord, type Tombstone, type WriteResult } from './store';

/** The engine's settings; {@link createIdempotency} documents each default. */
export interface HandlerOptions<Db> {
  readonly store: RecordStore<Db>;
  readonly codec: ResultCodec;
  /** How long an outcome is kept and replayed. */
  readonly ttlSeconds: number;
  /** How long a tombstone (no payload) answers late retries with IDEMPOTENCY_KEY_EXPIRED after an outcome expires; 0: none. */
  readonly tombstoneSeconds: number;
  /** How long a duplicate waits for the first request with its key, here or in another process. */
  readonly waitMs: number;
  /** Finished records kept in memory for replays; 0 turns the cache off. */
  readonly cacheSize: number;
  readonly observer: IdempotencyObserver;
  /** The stored form of an error a mutation threw, or undefined when it must not be stored. */
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

export type Completed = { readonly value: unknown; readonly marker: IdempotencyMarker };

/** A finished record with its result decoded once; null when it cannot be read. */
type Finished = Tombstone & { readonly stored: StoredResult | null };

/** How a call with a key ended; {@link IdempotencyHandler.answer} turns each into the field's answer. */
type Attempt =
  /** This call executed the mutation and wrote its record: `observed` tells how. */
  | { readonly kind: 'written'; readonly record: Finished; readonly observed: ObservedOutcome }
  | { readonly kind: 'found'; readonly record: Finished }
  | { readonly kind: 'expired'; readonly tombstone: Tombstone }
  | { readonly kind: 'busy' };

/** What the mutation's transaction did: the write of its record, or a domain failure that rolled it back. */
type Ran = { readonly written: WriteResult; readonly stored: StoredResult } | { readonly failure: DomainFailure };

/**
 * The lifecycle of an idempotent mutation. A live record is replayed (from memory, else one
 * primary-key read); a tombstone is answered IDEMPOTENCY_KEY_EXPIRED. Otherwise the mutation
 * runs in a transaction that also writes its record; the record's primary key, which a
 * tombstone keeps, arbitrates between processes. Duplicates within one process wait on the
 * first request's promise, so at most one of them waits in the database.
 */
export class IdempotencyHandler<Db> {
  private readonly cache: ExpiringLruCache<Finished>;
  /** Settles (never rejects) when the first request with a key here is done. */
  private readonly inFlight = new Map<string, Promise<unknown>>();

  constructor(readonly options: HandlerOptions<Db>) {
    this.cache = new ExpiringLruCache(options.cacheSize);
  }

  /** Executes once per (scope, key), or replays; throws the stored or replayed failure. */
  async execute(execution: Execution<Db>): Promise<Completed> {
    const started = performance.now();
    const fingerprint = fingerprintOf(execution.operation, execution.args);
    const { attempt, mutationMs } = await this.settle(execution, fingerprint);
    this.options.observer.overhead(execution.operation, (performance.now() - started - mutationMs) / 1000);
    switch (attempt.kind) {
      case 'written':
        return this.answer(attempt.record, execution, attempt.observed);
      case 'found':
        if (sameRequest(attempt.record, execution, fingerprint)) return this.answer(attempt.record, execution, ObservedOutcome.Replayed);
        return this.reject(execution, ObservedOutcome.ReusedRejected, keyReused(execution.key));
      case 'expired': {
        const { tombstone } = attempt;
        if (!sameRequest(tombstone, execution, fingerprint))
          return this.reject(execution, ObservedOutcome.ReusedRejected, keyReused(execution.key));
        const marker = markerOf(tombstone, execution, false);
        return this.reject(execution, ObservedOutcome.ExpiredRejected, keyExpired(execution.key, tombstone.resources, marker));
      }
      case 'busy':
        return this.reject(execution, ObservedOutcome.InProgressRejected, requestInProgress(execution.key, this.options.waitMs));
      default:
        return unreachable(attempt);
    }
  }

  /** The field's answer from a finished record: its payload, or its failure thrown. */
  private answer(record: Finished, execution: Execution<Db>, observed: ObservedOutcome): Completed {
    const marker = markerOf(record, execution, observed === ObservedOutcome.Replayed);
    if (!record.stored) throw recordUnreadable(execution.key, marker);
    this.options.observer.outcome(execution.operation, observed);
    if (record.stored.kind === 'error') throw storedFailure(record.stored, marker);
    return { value: record.stored.payload, marker };
  }

  private reject(execution: Execution<Db>, observed: ObservedOutcome, error: IdempotencyError): never {
    this.options.observer.outcome(execution.operation, observed);
    throw error;
  }

  /** A finished record from memory, after the first request with the key here, or from an attempt of its own. */
  private async settle(execution: Execution<Db>, fingerprint: Buffer): Promise<{ attempt: Attempt; mutationMs: number }> {
    const id = `${execution.scope}\u0000${execution.key}`;
    const deadline = Date.now() + this.options.waitMs;
    for (;;) {
      const cached = this.cache.get(id);
      if (cached) return { attempt: { kind: 'found', record: cached }, mutationMs: 0 };
      const running = this.inFlight.get(id);
      if (!running) break;
      if (!(await this.waitFor(running, deadline))) return { attempt: { kind: 'busy' }, mutationMs: 0 };
    }
    const attempt = this.attempt(execution, fingerprint);
    const done = attempt.catch(() => undefined);
    this.inFlight.set(id, done);
    const settled = await attempt.finally(() => this.inFlight.delete(id));
    // Only replayable records are kept: a late retry is rare, and its tombstone is read again.
    if (settled.attempt.kind !== 'busy' && settled.attempt.kind !== 'expired') this.cache.set(id, settled.attempt.record);
    return settled;
  }

  /** The live record of the key, else one execution in a transaction with its record. */
  private async attempt(execution: Execution<Db>, fingerprint: Buffer): Promise<{ attempt: Attempt; mutationMs: number }> {
    const { store, waitMs } = this.options;
    const found = await store.find(execution.db, execution.scope, execution.key);
    if (found) return { attempt: this.attemptOf(found), mutationMs: 0 };
    const started = performance.now();
    const ran = await store.transaction(execution.db, waitMs, (tx) => this.runAndRecord(execution, fingerprint, tx));
    const mutationMs = performance.now() - started;
    if ('written' in ran) return { attempt: await this.afterWrite(ran.written, ran.stored, execution), mutationMs };
    // The failure's record is written on its own, after its transaction rolled the mutation's writes back.
    const { code, message, details } = ran.failure;
    const stored: StoredResult = { kind: 'error', code, message, details: { ...details } };
    const record = this.newRecord(execution, fingerprint, Outcome.Failed, JSON.stringify(stored), []);
    const written = await store.transaction(execution.db, waitMs, async (tx) => {
      const result = await store.write(tx, record);
      return { commit: result.kind === 'written', value: result };
    });
    return { attempt: await this.afterWrite(written, stored, execution), mutationMs };
  }

  /** Runs the mutation and writes its record; commits only when the record was written. */
  private async runAndRecord(execution: Execution<Db>, fingerprint: Buffer, tx: Db): Promise<{ commit: boolean; value: Ran }> {
    const ran = await execution.run(tx).then(
      (payload: unknown) => ({ payload }),
      (error: unknown) => {
        const failure = this.options.domainFailure(error);
        if (!failure) throw error;
        return { failure };
      },
    );
    if ('failure' in ran) return { commit: false, value: ran };
    // The payload's JSON is built once, for the record and for the answer: the same plain data a replay returns.
    const json = JSON.stringify(ran.payload ?? null);
    const stored: StoredResult = { kind: 'payload', payload: JSON.parse(json) };
    const resources = execution.resources?.(stored.payload) ?? [];
    const record = this.newRecord(execution, fingerprint, Outcome.Succeeded, `{"kind":"payload","payload":${json}}`, resources);
    const written = await this.options.store.write(tx, record);
    return { commit: written.kind === 'written', value: { written, stored } };
  }

  /** What a write means: our record, or the answer of whichever transaction wrote the key first. */
  private async afterWrite(written: WriteResult, stored: StoredResult, execution: Execution<Db>): Promise<Attempt> {
    switch (written.kind) {
      case 'written': {
        const executed = written.replacedExpired ? ObservedOutcome.ExpiredReexecuted : ObservedOutcome.Executed;
        const observed = stored.kind === 'payload' ? executed : ObservedOutcome.FailureStored;
        return { kind: 'written', record: finished(written.record, stored), observed };
      }
      case 'taken': {
        const found = await this.options.store.find(execution.db, execution.scope, execution.key);
        return found ? this.attemptOf(found) : { kind: 'busy' };
      }
      case 'busy':
        return written;
      default:
        return unreachable(written);
    }
  }

  private attemptOf(found: Found): Attempt {
    switch (found.kind) {
      case 'live':
        return { kind: 'found', record: finished(found.record, this.options.codec.decode(found.record, bindingOf(found.record))) };
      case 'expired':
        return found;
      default:
        return unreachable(found);
    }
  }

  /** `json` is the {@link StoredResult} as JSON text. */
  private newRecord(execution: Execution<Db>, fingerprint: Buffer, outcome: Outcome, json: string, resources: readonly CreatedResource[]) {
    const { scope, key, operation, ttlSeconds = this.options.ttlSeconds, tombstoneSeconds = this.options.tombstoneSeconds } = execution;
    const encoded = this.options.codec.encode(json, bindingOf({ scope, key, fingerprint }));
    return { scope, key, operation, fingerprint, outcome, resources, ...encoded, ttlSeconds, tombstoneSeconds };
  }

  /** Whether the first request with the key settled before the duplicate's deadline. */
  private async waitFor(running: Promise<unknown>, deadline: number): Promise<boolean> {
    const started = performance.now();
    const timer = new AbortController();
    try {
      const remaining = deadline - Date.now();
      return remaining > 0 && (await Promise.race([running.then(() => true), delay(remaining, false, { signal: timer.signal })]));
    } finally {
      timer.abort();
      this.options.observer.waited((performance.now() - started) / 1000);
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

/** What the cache keeps: the result decoded, not its bytes, and the fingerprint in memory of its own ({@link unpooled}). */
function finished({ format: _format, keyId: _keyId, result: _result, ...record }: StoredRecord, stored: StoredResult | null): Finished {
  return { ...record, fingerprint: unpooled(record.fingerprint), stored };
}
