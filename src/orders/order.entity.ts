import { randomUUID } from 'node:crypto';
import { Collection } from '@mikro-orm/core';
import { Check, Entity, Enum, Index, OneToMany, PrimaryKey, Property } from '@mikro-orm/decorators/legacy';
import { OrderLine } from './order-line.entity';

/** Lifecycle of an order. */
export const OrderStatus = {
  Placed: 'PLACED',
  Cancelled: 'CANCELLED',
} as const;
export type OrderStatus = (typeof OrderStatus)[keyof typeof OrderStatus];

/** An order placed by one user; its lines fix the prices paid. */
@Entity({ tableName: 'orders' })
@Index({ name: 'orders_user_id_created_at_id_index', properties: ['userId', 'createdAt', 'id'] })
@Check({ name: 'orders_total_cents_check', expression: 'total_cents >= 0' })
export class Order {
  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'string', length: 128 })
  userId: string;

  @Enum({ items: () => Object.values(OrderStatus), type: 'string' })
  status: OrderStatus = OrderStatus.Placed;

  @Property({ type: 'integer' })
  totalCents: number;

  @Property({ type: 'character', length: 3 })
  currency: string;

  @Property({ type: 'string', length: 500, nullable: true })
  note: string | null;

  @Property({ type: 'datetime' })
  createdAt: Date = new Date();

  @Property({ type: 'datetime', nullable: true })
  cancelledAt: Date | null = null;

  @OneToMany(
    () => OrderLine,
    (line) => line.order,
    { orderBy: { position: 'asc' } },
  )
  lines = new Collection<OrderLine>(this);

  constructor(fields: { userId: string; totalCents: number; currency: string; note: string | null }) {
    this.userId = fields.userId;
    this.totalCents = fields.totalCents;
    this.currency = fields.currency;
    this.note = fields.note;
  }
}
