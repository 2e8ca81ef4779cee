/** What happened to one idempotent call, as reported to an {@link IdempotencyObserver}. */
export const ObservedOutcome = {
  Executed: 'executed',
  ExpiredReexecuted: 'expired_reexecuted',
  FailureStored: 'failure_stored',
  Replayed: 'replayed',
  ReusedRejected: 'reused_rejected',
  InProgressRejected: 'in_progress_rejected',
  ExpiredRejected: 'expired_rejected',
  MissingKey: 'missing_key',
  InvalidKey: 'invalid_key',
} as const;
export type ObservedOutcome = (typeof ObservedOutcome)[keyof typeof ObservedOutcome];

/** Receives the engine's measurements (metrics live outside the engine). */
export interface IdempotencyObserver {
  outcome(operation: string, outcome: ObservedOutcome): void;
  /** Seconds a duplicate spent waiting for the first request with its key. */
  waited(seconds: number): void;
  /** Seconds the engine added around the mutation itself. */
  overhead(operation: string, seconds: number): void;
}
