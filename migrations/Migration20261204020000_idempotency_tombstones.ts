import { Migration } from '@mikro-orm/migrations';

/**
 * Tombstones: after its result expires a record stays, without its result, until `forgotten_at`
 * (src/idempotency/store.ts). Existing rows get no tombstone (`forgotten_at` null: forgotten at
 * expiry), so nothing is rewritten; building the two indexes blocks writes to the table for as
 * long as they take (seconds per million rows).
 */
export class Migration20261204020000_idempotency_tombstones extends Migration {
  override async up(): Promise<void> {
    this.addSql(
      `alter table "idempotency_records" alter column "result" drop not null, add column "resources" jsonb not null default '[]', add column "forgotten_at" timestamptz null;`,
    );
    this.addSql(`drop index "idempotency_records_expires_at_index";`);
    this.addSql(
      `create index "idempotency_records_result_expires_at_index" on "idempotency_records" ("expires_at") where "result" is not null;`,
    );
    this.addSql(
      `create index "idempotency_records_forgotten_at_index" on "idempotency_records" ((coalesce("forgotten_at", "expires_at")));`,
    );
  }

  /** Tombstones have no result to go back to: they are deleted. */
  override async down(): Promise<void> {
    this.addSql(`delete from "idempotency_records" where "result" is null;`);
    this.addSql(`drop index "idempotency_records_forgotten_at_index";`);
    this.addSql(`drop index "idempotency_records_result_expires_at_index";`);
    this.addSql(`create index "idempotency_records_expires_at_index" on "idempotency_records" ("expires_at");`);
    this.addSql(
      `alter table "idempotency_records" drop column "forgotten_at", drop column "resources", alter column "result" set not null;`,
    );
  }
}
