import { Migration } from '@mikro-orm/migrations';

/** The transactional outbox of downstream events (src/events). */
export class Migration20261204000000_outbox_events extends Migration {
  override async up(): Promise<void> {
    this.addSql(
      `create table "outbox_events" ("seq" bigserial primary key, "id" uuid not null, "type" varchar(64) not null, "occurred_at" timestamptz not null, "data" jsonb not null, "xid" xid8 not null default pg_current_xact_id(), "published_at" timestamptz null);`,
    );
    this.addSql(`alter table "outbox_events" add constraint "outbox_events_id_unique" unique ("id");`);
    this.addSql(`create index "outbox_events_xid_seq_index" on "outbox_events" ("xid", "seq");`);
    this.addSql(`create index "outbox_events_published_at_index" on "outbox_events" ("published_at");`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "outbox_events" cascade;`);
  }
}
