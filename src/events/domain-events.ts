import type { Product } from '../catalog/product.entity';
import type { Order } from '../orders/order.entity';
import type { OrderLine } from '../orders/order-line.entity';
import { EventType, type NewEvent } from './outbox';

/** OrderPlaced: the order as placed, with the prices its lines fixed. */
export function orderPlaced(order: Order, lines: readonly OrderLine[]): NewEvent {
  return {
    type: EventType.OrderPlaced,
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
    type: EventType.OrderCancelled,
    subjectId: order.id,
    occurredAt: cancelledAt,
    data: {
      orderId: order.id,
      userId: order.userId,
      restocked: lines.map((line) => ({ productId: line.product.id, quantity: line.quantity })),
    },
  };
}

/** ProductCreated: the new product as stored. */
export function productCreated(product: Product): NewEvent {
  return {
    type: EventType.ProductCreated,
    subjectId: product.id,
    occurredAt: product.createdAt,
    data: {
      productId: product.id,
      sku: product.sku,
      name: product.name,
      priceCents: product.priceCents,
      currency: product.currency,
      stock: product.stock,
    },
  };
}
