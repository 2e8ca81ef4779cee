import { Check, Entity, Enum, Index, PrimaryKey, Property } from '@mikro-orm/decorators/legacy';
import { Outcome } from './store';

/**
 * The outcome of one idempotent mutation per (user, key), written only in that mutation's transaction, so a
 * committed row is always final. After `expiresAt` it is a tombstone (the purge drops its result) until `forgottenAt`.
 */
@Entity({ tableName: 'idempotency_records' })
// The purge's two scans: expired records whose result to drop, and rows to delete. No index names
// `result`, so dropping it is a HOT update (the migration also sets fillfactor = 80 for room).
@Index({ name: 'idempotency_records_expires_at_index', properties: ['expiresAt'] })
@Index({
  name: 'idempotency_records_forgotten_at_index',
  expression: 'create index "idempotency_records_forgotten_at_index" on "idempotency_records" ((coalesce("forgotten_at", "expires_at")))',
})
@Check({ name: 'idempotency_records_fingerprint_check', expression: 'octet_length(fingerprint) = 32' })
export class IdempotencyRecord {
  @PrimaryKey({ type: 'string', length: 128 })
  userId!: string;

  @PrimaryKey({ type: 'string', length: 64 })
  key!: string;

  @Property({ type: 'string', length: 128 })
  operation!: string;

  @Property({ type: 'blob' })
  fingerprint!: Buffer;

  @Enum({ items: () => Object.values(Outcome), type: 'string' })
  outcome!: Outcome;

  /** `RecordFormat` in codec.ts. */
  @Property({ type: 'smallint', default: 1 })
  format!: number;

  @Property({ type: 'string', length: 16, nullable: true })
  keyId!: string | null;

  /** Null once the record is a tombstone. */
  @Property({ type: 'blob', nullable: true })
  result!: Buffer | null;

  /** What the first execution created, named in a late retry's answer. */
  @Property({ type: 'json', default: "'[]'" })
  resources!: { type: string; id: string }[];

  @Property({ type: 'datetime' })
  createdAt!: Date;

  @Property({ type: 'datetime' })
  expiresAt!: Date;

  /** When the tombstone ends and the key is unused again; null: at `expiresAt` (no tombstone). */
  @Property({ type: 'datetime', nullable: true })
  forgottenAt!: Date | null;
}
