import { Arg, Args, Ctx, FieldResolver, ID, Mutation, Query, Resolver, Root } from 'type-graphql';
import { ProductType, toProductView } from '../catalog/product.type';
import { UnauthenticatedError } from '../errors';
import { connectionType, PageArgs, pageSize, toConnection } from '../graphql/connection';
import type { Context } from '../graphql/context';
import { IdempotencyKeyArg, Idempotent } from '../idempotency';
import { CancelOrderInput, CancelOrderPayload, CreateOrderInput, CreateOrderPayload } from './order.inputs';
import type { OrderService } from './order.service';
import { OrderLineType, OrderType, toOrderLineView, toOrderView } from './order.type';

const OrderConnection = connectionType('Order', OrderType);

@Resolver(() => OrderType)
export class OrderResolver {
  constructor(private readonly service: OrderService) {}

  @Query(() => OrderType, { nullable: true, description: "An order of the viewer's (an admin: any), or null." })
  async order(@Ctx() ctx: Context, @Arg('id', () => ID, { description: 'UUID of the order.' }) id: string) {
    const order = await this.service.findOrder(ctx.em, viewerOf(ctx), id);
    return order ? toOrderView(order) : null;
  }

  @Query(() => OrderConnection, { description: "The viewer's orders, newest first." })
  async orders(@Ctx() ctx: Context, @Args(() => PageArgs) { first, after }: PageArgs) {
    const size = pageSize(first);
    const page = await this.service.listOrders(ctx.em, viewerOf(ctx).id, size, after);
    return toConnection(
      page,
      (order) => this.service.orderCursor(order),
      (order) => toOrderView(order),
    );
  }

  @Mutation(() => CreateOrderPayload, { description: 'Places an order and reserves its stock. Idempotent by key.' })
  @Idempotent<CreateOrderPayload>({ resources: (payload) => [{ type: 'Order', id: payload.order.id }] })
  async createOrder(
    @Ctx() ctx: Context,
    @Arg('input', () => CreateOrderInput, { description: 'Lines and an optional note.' }) input: CreateOrderInput,
    @IdempotencyKeyArg() _idempotencyKey: string | null,
  ): Promise<CreateOrderPayload> {
    const viewer = viewerOf(ctx);
    const placed = await this.service.placeOrder(ctx.em, viewer.id, input);
    return { order: toOrderView(placed.order, placed.lines, placed.products) };
  }

  @Mutation(() => CancelOrderPayload, { description: 'Cancels a PLACED order and returns its stock. Idempotent by key.' })
  @Idempotent()
  async cancelOrder(
    @Ctx() ctx: Context,
    @Arg('input', () => CancelOrderInput, { description: 'The order to cancel.' }) input: CancelOrderInput,
    @IdempotencyKeyArg() _idempotencyKey: string | null,
  ): Promise<CancelOrderPayload> {
    const viewer = viewerOf(ctx);
    const cancelled = await this.service.cancelOrder(ctx.em, viewer, input);
    return { order: toOrderView(cancelled.order, cancelled.lines, cancelled.products) };
  }

  @FieldResolver(() => [OrderLineType], { description: 'The lines, in the order they were given.' })
  lines(@Root() order: OrderType, @Ctx() ctx: Context): OrderLineType[] | Promise<OrderLineType[]> {
    // A mutation's payload (and its replay) carries its lines: answered without a promise.
    if (order.lines) return order.lines;
    return ctx.loaders.linesByOrderId.load(order.id).then((lines) => lines.map((line) => toOrderLineView(line)));
  }
}

@Resolver(() => OrderLineType)
export class OrderLineResolver {
  @FieldResolver(() => ProductType, {
    description: 'The product, as it was when the order was placed or cancelled when returned by a mutation; current otherwise.',
  })
  product(@Root() line: OrderLineType, @Ctx() ctx: Context): ProductType | Promise<ProductType> {
    if (line.product) return line.product;
    return ctx.loaders.productById.load(line.productId).then((product) => {
      if (!product) throw new Error(`order line refers to missing product ${line.productId}`);
      return toProductView(product);
    });
  }
}

function viewerOf(ctx: Context) {
  if (!ctx.viewer) throw new UnauthenticatedError();
  return ctx.viewer;
}
