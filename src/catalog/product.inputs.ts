import { Field, InputType, Int, ObjectType } from 'type-graphql';
import { ProductType } from './product.type';

@InputType({ description: 'A new catalog product.' })
export class CreateProductInput {
  @Field({ description: '1 to 64 characters of A-Z a-z 0-9 _ . -, unique in the catalog.' })
  sku!: string;

  @Field({ description: 'Display name, 1 to 200 characters.' })
  name!: string;

  @Field(() => Int, { description: 'Unit price in cents, 0 to 10000000.' })
  priceCents!: number;

  @Field({ description: 'ISO 4217 currency code, three upper-case letters.' })
  currency!: string;

  @Field(() => Int, { description: 'Initial stock, 0 to 1000000000.' })
  stock!: number;
}

@ObjectType({ description: 'Result of createProduct.' })
export class CreateProductPayload {
  @Field(() => ProductType, { description: 'The created product.' })
  product!: ProductType;
}
