import { Migration } from '@mikro-orm/migrations';

/**
 * Turning a record into a tombstone becomes a HOT update (the new row version stays on its page
 * and no index gets a new entry): no index names `result` any more, so the partial index on the
 * expiry of rows with a result gives way to a plain one, and pages keep a fifth of their space
 * free for the tombstones. The fill factor applies to pages filled from now on; nothing is
 * rewritten. Building the index blocks writes to the table for as long as it takes.
 */
export class Migration20261204050000_idempotency_hot_tombstones extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "idempotency_records" set (fillfactor = 80);`);
    this.addSql(`drop index "idempotency_records_result_expires_at_index";`);
    this.addSql(`create index "idempotency_records_expires_at_index" on "idempotency_records" ("expires_at");`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop index "idempotency_records_expires_at_index";`);
    this.addSql(
      `create index "idempotency_records_result_expires_at_index" on "idempotency_records" ("expires_at") where "result" is not null;`,
    );
    this.addSql(`alter table "idempotency_records" reset (fillfactor);`);
  }
}
