import type { NewEvent } from '../events';
import type { Order } from './order.entity';
import type { OrderLine } from './order-line.entity';

/** The events an order's life appends to the outbox; docs/events.md describes their data. */
export const OrderEvent = {
  OrderPlaced: 'OrderPlaced',
  OrderCancelled: 'OrderCancelled',
} as const;

/** OrderPlaced: the order as placed, with the prices its lines fixed. */
export function orderPlaced(order: Order, lines: readonly OrderLine[]): NewEvent {
  return {
    type: OrderEvent.OrderPlaced,
    subjectId: order.id,
    occurredAt: order.createdAt,
    data: {
      orderId: order.id,
      userId: order.userId,
      totalCents: order.totalCents,
      currency: order.currency,
      note: order.note,
      lines: lines.map((line) => ({
        productId: line.product.id,
        quantity: line.quantity,
        unitPriceCents: line.unitPriceCents,
        lineTotalCents: line.lineTotalCents,
      })),
    },
  };
}

/** OrderCancelled: the order and the quantities returned to stock. */
export function orderCancelled(order: Order, lines: readonly OrderLine[]): NewEvent {
  const cancelledAt = order.cancelledAt ?? new Date();
  return {
    type: OrderEvent.OrderCancelled,
    subjectId: order.id,
    occurredAt: cancelledAt,
    data: {
      orderId: order.id,
      userId: order.userId,
      restocked: lines.map((line) => ({ productId: line.product.id, quantity: line.quantity })),
    },
  };
}
