import { Check, Entity, Enum, Index, PrimaryKey, Property } from '@mikro-orm/decorators/legacy';
import { Outcome } from './store';

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

  /** SHA-256 of the canonical operation and arguments. */
  @Property({ type: 'blob' })
  fingerprint!: Buffer;

  @Enum({ items: () => Object.values(Outcome), type: 'string' })
  outcome!: Outcome;

  /** How `result` is written: 1 JSON text, 2 AES-256-GCM over it (codec.ts). */
  @Property({ type: 'smallint', default: 1 })
  format!: number;

  /** Which encryption key wrote `result`; null when it is not encrypted. */
  @Property({ type: 'string', length: 16, nullable: true })
  keyId!: string | null;

  @Property({ type: 'blob' })
  result!: Buffer;

  @Property({ type: 'datetime' })
  createdAt!: Date;

  @Property({ type: 'datetime' })
  expiresAt!: Date;
}
