import { Migration } from '@mikro-orm/migrations';

/**
 * Stored results become bytes (`src/idempotency/codec.ts`): deflated JSON behind a format
 * byte. Rows written before keep their JSON text, which the codec still reads. The column
 * change rewrites the table under an exclusive lock: run it when the table is small, e.g.
 * right after a purge.
 */
export class Migration20261128030000_idempotency_result_bytes extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "idempotency_records" alter column "result" type bytea using convert_to("result"::text, 'UTF8');`);
  }

  /** Only rows still holding JSON text can go back; a deflated or encrypted result stops the rollback. */
  override async down(): Promise<void> {
    this.addSql(
      `do $$ begin
         if exists (select from "idempotency_records" where get_byte("result", 0) <> ascii('{')) then
           raise exception 'idempotency_records holds compressed results, which cannot be converted back to JSONB';
         end if;
       end $$;`,
    );
    this.addSql(`alter table "idempotency_records" alter column "result" type jsonb using convert_from("result", 'UTF8')::jsonb;`);
  }
}
