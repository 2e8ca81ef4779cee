import type { EntityManager } from '@mikro-orm/postgresql';
import type { Logger } from 'pino';
import { AppError, type ErrorCode } from '../errors';
import { withTimeout } from '../timeout';
import { ExpiringLruCache } from './cache';
import { plainCodec, type ResultCodec, type StoredResult } from './codec';
import { fingerprint } from './fingerprint';
import { IdempotencyKeyReusedError, IdempotencyRequestInProgressError } from './idempotency.errors';
import { type IdempotencyObserver, ObservedOutcome, silentObserver } from './idempotency.observer';
import { Outcome } from './record.entity';
import {
  type FoundRecord,
  type IdempotencyStore,
  type NewRecord,
  type PendingRecord,
  RECORD_KEY_CONSTRAINT,
  type RecordRow,
} from './record.store';

/** What `extensions.idempotency` reports for one idempotent field. */
export interface IdempotencyMarker {
  readonly path: readonly (string | number)[];
  readonly key: string;
  readonly replayed: boolean;
  readonly firstExecutedAt: string;
  readonly expiresAt: string;
}

/** Engine settings; every field has a default. */
export interface HandlerConfig {
  /** How long an outcome is kept and replayed. Default 86400 s. */
  readonly ttlSeconds?: number;
  /** How long a duplicate waits for an in-flight first request. Default 10000 ms. */
  readonly waitMs?: number;
  /** Compressed JSON, or compressed and encrypted with AES-256-GCM. Default plain (compressed). */
  readonly codec?: ResultCodec;
  /** Finished records kept in memory for replays. Default 10000; 0 turns the cache off. */
  readonly cacheSize?: number;
  /**
   * Whole responses kept for requests repeating an earlier replayed request exactly. Default
   * the smaller of 1000 and `cacheSize`; 0 turns it off.
   */
  readonly responseCacheSize?: number;
  readonly logger?: Logger;
  /** Keys the fingerprint (HMAC-SHA-256) so it cannot be reversed by trying inputs; default: plain SHA-256. */
  readonly fingerprintSecret?: Buffer;
  /** Receives outcomes and timings; default: none. */
  readonly observer?: IdempotencyObserver;
}

/** One call of an idempotent field. */
export interface Execution<T> {
  /** The mutation field, e.g. `createOrder`. */
  readonly operation: string;
  /** Coerced field arguments without the key. */
  readonly args: Readonly<Record<string, unknown>>;
  /** Whose record this is (the user id). */
  readonly scope: string;
  /** A validated key. */
  readonly key: string;
  /** Response path of the field, for the marker. */
  readonly path: readonly (string | number)[];
  /** The request's EntityManager; the handler opens its transaction on it. */
  readonly em: EntityManager;
  /** Per-mutation TTL, overriding the engine's. */
  readonly ttlSeconds?: number;
  /** Runs the mutation with the transaction's EntityManager and returns plain payload data. */
  readonly run: (em: EntityManager) => Promise<T>;
}

/** The outcome handed back to the field: the payload and its marker. */
export interface Completed {
  readonly value: unknown;
  readonly marker: IdempotencyMarker;
}

/** A stored domain failure replayed (or just stored), carrying its marker. */
export class IdempotentFailure extends AppError {
  override readonly domain = true;
  constructor(
    readonly code: ErrorCode,
    message: string,
    details: Record<string, unknown>,
    readonly marker: IdempotencyMarker,
  ) {
    super(message, details);
  }
}

/**
 * The response to a request whose every root field was replayed. It is a function of the
 * records and the request alone, so an identical request (same caller, document, operation,
 * variables and header key) may get it again without executing, until a record expires.
 */
export interface ReplayedResponse {
  readonly data: Readonly<Record<string, unknown>>;
  readonly markers: readonly IdempotencyMarker[];
  /** The replayed mutation fields, for the observer. */
  readonly operations: readonly string[];
  /** The earliest expiry of the records behind it. */
  readonly expiresAt: Date;
}

/** Signals that another transaction committed a live record for the key first. */
class LostRace extends Error {}

/**
 * The lifecycle of an idempotent mutation: lookup, coalescing of duplicates, execution in one
 * transaction with the record, replay.
 *
 * Statements per path (beyond the mutation's own), and the round trips they cost:
 * - a repeat of a request this process answered as a replay: 0, and nothing executes (the
 *   response plugin answers it from {@link replayedResponse});
 * - replay from this process's cache: 0;
 * - replay otherwise: 1, a primary-key read sent with a BEGIN, and a ROLLBACK (2 round trips,
 *   no write); a reused key is rejected the same way;
 * - first execution: 2, no round trip of their own: the read goes in the same message as the
 *   mutation's BEGIN, the record insert in the same message as its COMMIT;
 * - re-execution of an expired key: 2 (the read with the BEGIN, and an upsert that replaces
 *   the expired record: 1 round trip);
 * - stored domain failure: 2 (the read with the BEGIN, and the record insert after the
 *   rollback: 1 round trip).
 *
 * Duplicates in one process wait on the first request's promise, not in the database, so they
 * hold no connection. Across processes the primary key on (user, key) arbitrates: a second
 * writer blocks until the first commits, finds the key taken (its insert fails, so its COMMIT
 * never runs), rolls back and replays.
 */
export class IdempotencyHandler {
  private readonly ttlSeconds: number;
  private readonly waitMs: number;
  private readonly codec: ResultCodec;
  private readonly cache: ExpiringLruCache<RecordRow>;
  private readonly responses: ExpiringLruCache<ReplayedResponse>;
  private readonly inFlight = new Map<string, Promise<unknown>>();
  private readonly fingerprintSecret: Buffer | undefined;
  /** Where outcomes and timings are reported. */
  readonly observer: IdempotencyObserver;

  constructor(
    private readonly store: IdempotencyStore,
    config: HandlerConfig = {},
  ) {
    this.ttlSeconds = config.ttlSeconds ?? 86_400;
    this.waitMs = config.waitMs ?? 10_000;
    this.codec = config.codec ?? plainCodec;
    const cacheSize = config.cacheSize ?? 10_000;
    this.cache = new ExpiringLruCache(cacheSize);
    this.responses = new ExpiringLruCache(config.responseCacheSize ?? Math.min(1_000, cacheSize));
    this.observer = config.observer ?? silentObserver;
    this.fingerprintSecret = config.fingerprintSecret;
  }

  /** Executes once per (scope, key) or replays; throws the replayed or stored failure. */
  async execute<T>(execution: Execution<T>): Promise<Completed> {
    const started = performance.now();
    let inMutation = 0;
    const timed: Execution<T> = {
      ...execution,
      run: async (em) => {
        const runStarted = performance.now();
        try {
          return await execution.run(em);
        } finally {
          inMutation += performance.now() - runStarted;
        }
      },
    };
    try {
      return await this.coalesce(timed);
    } catch (error) {
      if (error instanceof IdempotencyKeyReusedError) this.observer.outcome(execution.operation, ObservedOutcome.ReusedRejected);
      if (error instanceof IdempotencyRequestInProgressError)
        this.observer.outcome(execution.operation, ObservedOutcome.InProgressRejected);
      throw error;
    } finally {
      this.observer.overhead(execution.operation, (performance.now() - started - inMutation) / 1000);
    }
  }

  /** The remembered response of an identical replayed request, counted as replays; else undefined. */
  replayedResponse(slot: string): ReplayedResponse | undefined {
    const response = this.responses.get(slot);
    if (response) for (const operation of response.operations) this.observer.outcome(operation, ObservedOutcome.Replayed);
    return response;
  }

  /** Remembers the response of a request whose every root field was replayed. */
  rememberResponse(slot: string, response: ReplayedResponse): void {
    this.responses.set(slot, response);
  }

  private async coalesce<T>(execution: Execution<T>): Promise<Completed> {
    const print = fingerprint(execution.operation, execution.args, this.fingerprintSecret);
    const slot = `${execution.scope}\u0000${execution.key}`;
    const deadline = Date.now() + this.waitMs;
    for (;;) {
      const cached = this.cache.get(slot);
      if (cached) return this.replay(cached, execution, print);
      const running = this.inFlight.get(slot);
      if (running) {
        const waitStarted = performance.now();
        try {
          await this.waitFor(running, deadline, execution.key);
        } finally {
          this.observer.waited((performance.now() - waitStarted) / 1000);
        }
        continue;
      }
      const attempt = this.lead(execution, print, slot);
      const settled = attempt.then(
        () => undefined,
        () => undefined,
      );
      this.inFlight.set(slot, settled);
      try {
        return await attempt;
      } finally {
        this.inFlight.delete(slot);
      }
    }
  }

  private async lead<T>(execution: Execution<T>, print: Buffer, slot: string): Promise<Completed> {
    const ttlSeconds = execution.ttlSeconds ?? this.ttlSeconds;
    let failure: AppError | undefined;
    let stored: RecordRow | null = null;
    let pending: PendingRecord | undefined;
    let live: FoundRecord | null = null;
    let payloadJson = 'null';
    try {
      const begun = await this.store.unlessLive(execution.em, execution.scope, execution.key, async (tx, expired) => {
        // The payload's JSON text is serialised once, for the record and for the answer.
        payloadJson = JSON.stringify((await execution.run(tx)) ?? null);
        const record = this.newRecord(execution, print, ttlSeconds, Outcome.Succeeded, `{"kind":"payload","payload":${payloadJson}}`);
        // A key without any record: the insert rides in the COMMIT's message. An expired record
        // is replaced by an upsert of its own, which can tell a live record (a lost race) apart.
        pending = expired ? undefined : this.store.insertWithCommit(tx, record);
        if (pending) return null;
        const row = await this.insert(tx, execution, record);
        if (!row) throw new LostRace();
        return row;
      });
      live = begun.live;
      stored = begun.live ? null : begun.value;
      if (pending) stored = pending.committed();
    } catch (error) {
      if (error instanceof AppError && error.domain && !(error instanceof IdempotentFailure)) {
        failure = error;
      } else if (pending && isKeyTaken(error)) {
        // Another transaction wrote the key's record first; this one rolled back.
      } else if (pending && isLockTimeout(error)) {
        throw new IdempotencyRequestInProgressError(execution.key, this.retryAfterSeconds());
      } else if (!(error instanceof LostRace)) {
        throw error;
      }
    }
    if (live) return this.remember(slot, live, execution, print);
    if (failure) {
      // The mutation's writes are rolled back; the failure is recorded on its own.
      stored = await this.insert(
        execution.em,
        execution,
        this.newRecord(
          execution,
          print,
          ttlSeconds,
          Outcome.Failed,
          JSON.stringify({
            kind: 'error',
            code: failure.code,
            message: failure.message,
            details: { ...failure.details },
          } satisfies StoredResult),
        ),
      );
    }
    if (!stored) {
      const winner = await this.store.findLive(execution.em, execution.scope, execution.key);
      if (!winner) throw new IdempotencyRequestInProgressError(execution.key, this.retryAfterSeconds());
      return this.remember(slot, winner, execution, print);
    }
    this.cache.set(slot, stored);
    this.observer.outcome(
      execution.operation,
      failure ? ObservedOutcome.FailureStored : stored.replacedExpired ? ObservedOutcome.ExpiredReexecuted : ObservedOutcome.Executed,
    );
    const marker = markerOf(stored, execution, false);
    if (failure) throw new IdempotentFailure(failure.code, failure.message, { ...failure.details }, marker);
    // The payload as plain JSON data, as a replay will return it, so both answers are identical.
    // Parsed once the transaction has ended: its locks are not held for it.
    return { value: JSON.parse(payloadJson), marker };
  }

  /** The record of an outcome; `json` is its {@link StoredResult} as JSON text. */
  private newRecord<T>(execution: Execution<T>, print: Buffer, ttlSeconds: number, outcome: Outcome, json: string): NewRecord {
    return {
      userId: execution.scope,
      key: execution.key,
      operation: execution.operation,
      fingerprint: print,
      outcome,
      result: this.codec.encode(json, associatedData(execution.scope, execution.key, print)),
      ttlSeconds,
    };
  }

  private async insert<T>(em: EntityManager, execution: Execution<T>, record: NewRecord) {
    try {
      return await this.store.insert(em, record);
    } catch (error) {
      if (isLockTimeout(error)) throw new IdempotencyRequestInProgressError(execution.key, this.retryAfterSeconds());
      throw error;
    }
  }

  private remember<T>(slot: string, row: RecordRow, execution: Execution<T>, print: Buffer): Completed {
    this.cache.set(slot, row);
    return this.replay(row, execution, print);
  }

  private replay<T>(row: RecordRow, execution: Execution<T>, print: Buffer): Completed {
    if (row.operation !== execution.operation || !row.fingerprint.equals(print)) {
      throw new IdempotencyKeyReusedError(execution.key);
    }
    const result = this.codec.decode(row.result, associatedData(row.userId, row.key, row.fingerprint));
    const marker = markerOf(row, execution, true);
    this.observer.outcome(execution.operation, ObservedOutcome.Replayed);
    if (result.kind === 'error') {
      throw new IdempotentFailure(result.code as ErrorCode, result.message, result.details, marker);
    }
    return { value: result.payload, marker };
  }

  private async waitFor(running: Promise<unknown>, deadline: number, key: string): Promise<void> {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new IdempotencyRequestInProgressError(key, this.retryAfterSeconds());
    // `running` never rejects (it is the first request's settlement), so a rejection is the timeout.
    await withTimeout(running, remaining, 'the first request with this key').catch(() => {
      throw new IdempotencyRequestInProgressError(key, this.retryAfterSeconds());
    });
  }

  private retryAfterSeconds(): number {
    return Math.max(1, Math.ceil(this.waitMs / 1000));
  }
}

/** Another process holds the key in an open transaction for longer than lock_timeout. */
function isLockTimeout(error: unknown): boolean {
  return (error as { code?: string }).code === '55P03';
}

/** A record of the key was committed by another transaction first. */
function isKeyTaken(error: unknown): boolean {
  const { code, constraint } = error as { code?: string; constraint?: string };
  return code === '23505' && constraint === RECORD_KEY_CONSTRAINT;
}

function associatedData(scope: string, key: string, print: Buffer): string {
  return `${scope}\u0000${key}\u0000${print.toString('hex')}`;
}

function markerOf<T>(row: RecordRow, execution: Execution<T>, replayed: boolean): IdempotencyMarker {
  return {
    path: execution.path,
    key: execution.key,
    replayed,
    firstExecutedAt: row.createdAt.toISOString(),
    expiresAt: row.expiresAt.toISOString(),
  };
}
