import { Field, ID, Int, ObjectType, registerEnumType } from 'type-graphql';
import type { Product } from '../catalog/product.entity';
import { type ProductType, toProductView } from '../catalog/product.type';
import type { Order } from './order.entity';
import type { OrderLine } from './order-line.entity';

/** GraphQL values of the order status. */
export const OrderStatusValue = { PLACED: 'PLACED', CANCELLED: 'CANCELLED' } as const;
registerEnumType(OrderStatusValue, {
  name: 'OrderStatus',
  description: 'Lifecycle of an order.',
  valuesConfig: {
    PLACED: { description: 'Placed; its stock is reserved.' },
    CANCELLED: { description: 'Cancelled; its stock was returned to the catalog.' },
  },
});

@ObjectType('OrderLine', { description: 'One product of an order, at the price it was sold.' })
export class OrderLineType {
  /** Present on snapshots; resolved through the request's product loader otherwise. */
  product?: ProductType;

  productId!: string;

  @Field(() => Int, { description: 'Units ordered, 1 to 1000.' })
  quantity!: number;

  @Field(() => Int, { description: 'Unit price in cents when the order was placed.' })
  unitPriceCents!: number;

  @Field(() => Int, { description: 'quantity × unitPriceCents.' })
  lineTotalCents!: number;
}

@ObjectType('Order', { description: 'An order placed by a user.' })
export class OrderType {
  @Field(() => ID, { description: 'UUID of the order.' })
  id!: string;

  @Field(() => OrderStatusValue, { description: 'PLACED or CANCELLED.' })
  status!: string;

  /** Present on snapshots; resolved through the request's line loader otherwise. */
  lines?: OrderLineType[];

  @Field(() => Int, { description: 'Sum of the line totals, in cents.' })
  totalCents!: number;

  @Field({ description: 'ISO 4217 currency code shared by every line.' })
  currency!: string;

  @Field(() => String, { nullable: true, description: 'Free text from the buyer, up to 500 characters.' })
  note!: string | null;

  @Field(() => Date, { description: 'When the order was placed.' })
  createdAt!: Date | string;

  @Field(() => Date, { nullable: true, description: 'When the order was cancelled, if it was.' })
  cancelledAt!: Date | string | null;
}

/** The GraphQL view of an order; with lines and products when given, for a complete snapshot. */
export function toOrderView(order: Order, lines?: readonly OrderLine[], products?: ReadonlyMap<string, Product>): OrderType {
  return {
    id: order.id,
    status: order.status,
    totalCents: order.totalCents,
    currency: order.currency,
    note: order.note,
    createdAt: order.createdAt,
    cancelledAt: order.cancelledAt,
    lines: lines?.map((line) => toOrderLineView(line, products?.get(line.product.id))),
  };
}

export function toOrderLineView(line: OrderLine, product?: Product): OrderLineType {
  return {
    productId: line.product.id,
    product: product ? toProductView(product) : undefined,
    quantity: line.quantity,
    unitPriceCents: line.unitPriceCents,
    lineTotalCents: line.lineTotalCents,
  };
}
