import { Field, ID, InputType, Int, ObjectType } from 'type-graphql';
import { OrderType } from './order.type';

@InputType({ description: 'One product and how many units of it.' })
export class OrderLineInput {
  @Field(() => ID, { description: 'UUID of the product; each product may appear in one line only.' })
  productId!: string;

  @Field(() => Int, { description: 'Units to order, 1 to 1000.' })
  quantity!: number;
}

@InputType({ description: 'A new order.' })
export class CreateOrderInput {
  @Field(() => [OrderLineInput], { description: '1 to 100 lines, all in one currency.' })
  lines!: OrderLineInput[];

  @Field(() => String, { nullable: true, description: 'Free text, up to 500 characters.' })
  note?: string | null;
}

@InputType({ description: 'The order to cancel.' })
export class CancelOrderInput {
  @Field(() => ID, { description: 'UUID of a PLACED order of the viewer.' })
  orderId!: string;

  @Field(() => String, { nullable: true, description: 'Why the order is cancelled, up to 500 characters (not stored).' })
  reason?: string | null;
}

@ObjectType({ description: 'Result of createOrder.' })
export class CreateOrderPayload {
  @Field(() => OrderType, { description: 'The placed order.' })
  order!: OrderType;
}

@ObjectType({ description: 'Result of cancelOrder.' })
export class CancelOrderPayload {
  @Field(() => OrderType, { description: 'The cancelled order.' })
  order!: OrderType;
}
