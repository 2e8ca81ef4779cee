import type { Ref } from '@mikro-orm/core';
import { Check, Entity, ManyToOne, PrimaryKey, Property } from '@mikro-orm/decorators/legacy';
import { Product } from '../catalog/product.entity';
import { Order } from './order.entity';

/** One product in an order, with the unit price it was sold at. */
@Entity({ tableName: 'order_lines' })
@Check({ name: 'order_lines_quantity_check', expression: 'quantity > 0' })
export class OrderLine {
  @ManyToOne(() => Order, { primary: true, ref: true, updateRule: 'cascade', deleteRule: 'cascade' })
  order: Ref<Order>;

  @PrimaryKey({ type: 'smallint' })
  position: number;

  @ManyToOne(() => Product, { ref: true, index: true, updateRule: 'cascade' })
  product: Ref<Product>;

  @Property({ type: 'integer' })
  quantity: number;

  @Property({ type: 'integer' })
  unitPriceCents: number;

  @Property({ type: 'integer' })
  lineTotalCents: number;

  constructor(fields: {
    order: Ref<Order>;
    position: number;
    product: Ref<Product>;
    quantity: number;
    unitPriceCents: number;
  }) {
    this.order = fields.order;
    this.position = fields.position;
    this.product = fields.product;
    this.quantity = fields.quantity;
    this.unitPriceCents = fields.unitPriceCents;
    this.lineTotalCents = fields.quantity * fields.unitPriceCents;
  }
}
