import { randomUUID } from 'node:crypto';
import { Check, Entity, PrimaryKey, Property } from '@mikro-orm/decorators/legacy';

/** A catalog product; money is integer cents in one ISO 4217 currency. */
@Entity({ tableName: 'products' })
@Check({ name: 'products_stock_check', expression: 'stock >= 0' })
@Check({ name: 'products_price_cents_check', expression: 'price_cents >= 0' })
export class Product {
  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'string', length: 64, unique: true })
  sku: string;

  @Property({ type: 'string', length: 200 })
  name: string;

  @Property({ type: 'integer' })
  priceCents: number;

  @Property({ type: 'character', length: 3 })
  currency: string;

  @Property({ type: 'integer' })
  stock: number;

  @Property({ type: 'datetime' })
  createdAt: Date = new Date();

  constructor(fields: { sku: string; name: string; priceCents: number; currency: string; stock: number }) {
    this.sku = fields.sku;
    this.name = fields.name;
    this.priceCents = fields.priceCents;
    this.currency = fields.currency;
    this.stock = fields.stock;
  }
}
