import { Migration } from '@mikro-orm/migrations';

export class Migration20261128010000_catalog_and_orders extends Migration {
  override async up(): Promise<void> {
    this.addSql(
      `create table "products" ("id" uuid not null, "sku" varchar(64) not null, "name" varchar(200) not null, "price_cents" int not null, "currency" char(3) not null, "stock" int not null, "created_at" timestamptz not null, constraint "products_pkey" primary key ("id"), constraint products_price_cents_check check (price_cents >= 0), constraint products_stock_check check (stock >= 0));`,
    );
    this.addSql(`alter table "products" add constraint "products_sku_unique" unique ("sku");`);

    this.addSql(
      `create table "orders" ("id" uuid not null, "user_id" varchar(128) not null, "status" text check ("status" in ('PLACED', 'CANCELLED')) not null, "total_cents" int not null, "currency" char(3) not null, "note" varchar(500) null, "created_at" timestamptz not null, "cancelled_at" timestamptz null, constraint "orders_pkey" primary key ("id"), constraint orders_total_cents_check check (total_cents >= 0));`,
    );
    this.addSql(`create index "orders_user_id_created_at_id_index" on "orders" ("user_id", "created_at", "id");`);

    this.addSql(
      `create table "order_lines" ("order_id" uuid not null, "position" smallint not null, "product_id" uuid not null, "quantity" int not null, "unit_price_cents" int not null, "line_total_cents" int not null, constraint "order_lines_pkey" primary key ("order_id", "position"), constraint order_lines_quantity_check check (quantity > 0));`,
    );
    this.addSql(`create index "order_lines_product_id_index" on "order_lines" ("product_id");`);
    this.addSql(
      `alter table "order_lines" add constraint "order_lines_order_id_foreign" foreign key ("order_id") references "orders" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(
      `alter table "order_lines" add constraint "order_lines_product_id_foreign" foreign key ("product_id") references "products" ("id") on update cascade;`,
    );
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "order_lines" cascade;`);
    this.addSql(`drop table if exists "orders" cascade;`);
    this.addSql(`drop table if exists "products" cascade;`);
  }
}
