import { Check, Entity, Enum, Index, PrimaryKey, Property } from '@mikro-orm/core';

/** Outcome of a first execution, as stored and replayed. */
export const Outcome = {
  Succeeded: 'SUCCEEDED',
  Failed: 'FAILED',
} as const;
export type Outcome = (typeof Outcome)[keyof typeof Outcome];

/**
 * The stored outcome of one idempotent mutation, per (user, key). Rows are only ever written in
 * the transaction of the mutation they describe, so a committed row always has a final outcome.
 */
@Entity({ tableName: 'idempotency_records' })
@Index({ name: 'idempotency_records_expires_at_index', properties: ['expiresAt'] })
@Check({ name: 'idempotency_records_fingerprint_check', expression: 'octet_length(fingerprint) = 32' })
export class IdempotencyRecord {
  @PrimaryKey({ type: 'string', length: 128 })
  userId!: string;

  @PrimaryKey({ type: 'string', length: 64 })
  key!: string;

  @Property({ type: 'string', length: 128 })
  operation!: string;

  /** SHA-256 of the canonical operation and arguments; not reversible to the input. */
  @Property({ type: 'blob' })
  fingerprint!: Buffer;

  @Enum({ items: () => Object.values(Outcome), type: 'string' })
  outcome!: Outcome;

  /**
   * The payload snapshot or the error: compressed JSON behind a format byte, encrypted when
   * encryption is on (see codec.ts).
   */
  @Property({ type: 'blob' })
  result!: Buffer;

  @Property({ type: 'datetime' })
  createdAt!: Date;

  @Property({ type: 'datetime' })
  expiresAt!: Date;
}
