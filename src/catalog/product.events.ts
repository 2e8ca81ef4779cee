import type { NewEvent } from '../events';
import type { Product } from './product.entity';

/** The events of the catalog; docs/events.md describes their data. */
export const ProductEvent = {
  ProductCreated: 'ProductCreated',
} as const;

/** ProductCreated: the new product as stored. */
export function productCreated(product: Product): NewEvent {
  return {
    type: ProductEvent.ProductCreated,
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
