import { Migration } from '@mikro-orm/migrations';

/**
 * One stored-result format: `format` says how `result` is written (1 JSON text, 2 AES-256-GCM
 * over it) and `key_id` which encryption key wrote it. Rows of the earlier compressed formats
 * are deleted: no deployment holds any, and their retries simply execute once more.
 */
export class Migration20261203230000_idempotency_record_format extends Migration {
  override async up(): Promise<void> {
    this.addSql(`delete from "idempotency_records";`);
    this.addSql(`alter table "idempotency_records" add column "format" smallint not null default 1, add column "key_id" varchar(16) null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`delete from "idempotency_records";`);
    this.addSql(`alter table "idempotency_records" drop column "format", drop column "key_id";`);
  }
}
