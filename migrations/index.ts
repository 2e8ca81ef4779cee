import type { MigrationObject } from '@mikro-orm/core';
import { Migration20261128010000_catalog_and_orders } from './Migration20261128010000_catalog_and_orders';
import { Migration20261128020000_idempotency_records } from './Migration20261128020000_idempotency_records';
import { Migration20261128030000_idempotency_result_bytes } from './Migration20261128030000_idempotency_result_bytes';
import { Migration20261203230000_idempotency_record_format } from './Migration20261203230000_idempotency_record_format';
import { Migration20261204000000_outbox_events } from './Migration20261204000000_outbox_events';
import { Migration20261204020000_idempotency_tombstones } from './Migration20261204020000_idempotency_tombstones';
import { Migration20261204050000_idempotency_hot_tombstones } from './Migration20261204050000_idempotency_hot_tombstones';

/**
 * Every migration, in order. A new file from `npm run migration:create` is added here; a test
 * fails when a migration file is missing from this list.
 */
export const MIGRATIONS: MigrationObject[] = [
  { name: 'Migration20261128010000_catalog_and_orders', class: Migration20261128010000_catalog_and_orders },
  { name: 'Migration20261128020000_idempotency_records', class: Migration20261128020000_idempotency_records },
  { name: 'Migration20261128030000_idempotency_result_bytes', class: Migration20261128030000_idempotency_result_bytes },
  { name: 'Migration20261203230000_idempotency_record_format', class: Migration20261203230000_idempotency_record_format },
  { name: 'Migration20261204000000_outbox_events', class: Migration20261204000000_outbox_events },
  { name: 'Migration20261204020000_idempotency_tombstones', class: Migration20261204020000_idempotency_tombstones },
  { name: 'Migration20261204050000_idempotency_hot_tombstones', class: Migration20261204050000_idempotency_hot_tombstones },
];
