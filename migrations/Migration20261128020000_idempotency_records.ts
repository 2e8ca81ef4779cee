import { Migration } from '@mikro-orm/migrations';

export class Migration20261128020000_idempotency_records extends Migration {
  override async up(): Promise<void> {
    this.addSql(
      `create table "idempotency_records" ("user_id" varchar(128) not null, "key" varchar(64) not null, "operation" varchar(128) not null, "fingerprint" bytea not null, "outcome" text check ("outcome" in ('SUCCEEDED', 'FAILED')) not null, "result" jsonb not null, "created_at" timestamptz not null, "expires_at" timestamptz not null, constraint "idempotency_records_pkey" primary key ("user_id", "key"), constraint idempotency_records_fingerprint_check check (octet_length(fingerprint) = 32));`,
    );
    this.addSql(`create index "idempotency_records_expires_at_index" on "idempotency_records" ("expires_at");`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "idempotency_records" cascade;`);
  }
}
