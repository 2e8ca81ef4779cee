import { Field, ID, Int, ObjectType } from 'type-graphql';
import type { Product } from './product.entity';

@ObjectType('Product', { description: 'A product of the catalog.' })
export class ProductType {
  @Field(() => ID, { description: 'UUID of the product.' })
  id!: string;

  @Field({ description: 'Stock keeping unit, unique in the catalog.' })
  sku!: string;

  @Field({ description: 'Display name.' })
  name!: string;

  @Field(() => Int, { description: 'Unit price in the smallest unit of the currency (cents).' })
  priceCents!: number;

  @Field({ description: 'ISO 4217 currency code of the price.' })
  currency!: string;

  @Field(() => Int, { description: 'Units available to order.' })
  stock!: number;
}

/** The GraphQL view of a product: plain data, so it can be stored and replayed as is. */
export function toProductView(product: Product): ProductType {
  return {
    id: product.id,
    sku: product.sku,
    name: product.name,
    priceCents: product.priceCents,
    currency: product.currency,
    stock: product.stock,
  };
}
