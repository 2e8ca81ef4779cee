import { Arg, Args, Ctx, ID, Mutation, Query, Resolver } from 'type-graphql';
import { connectionType, PageArgs, pageSize, toConnection } from '../graphql/connection';
import type { Context } from '../graphql/context';
import { IdempotencyKeyArg, Idempotent } from '../idempotency';
import type { CatalogService } from './catalog.service';
import { CreateProductInput, CreateProductPayload } from './product.inputs';
import { ProductType, toProductView } from './product.type';

const ProductConnection = connectionType('Product', ProductType);

@Resolver(() => ProductType)
export class ProductResolver {
  constructor(private readonly catalog: CatalogService) {}

  @Query(() => ProductConnection, { description: 'The catalog, ordered by SKU.' })
  async products(@Ctx() ctx: Context, @Args(() => PageArgs) { first, after }: PageArgs) {
    const size = pageSize(first);
    const page = await this.catalog.listProducts(ctx.em, size, after);
    return toConnection(page, (product) => this.catalog.productCursor(product), toProductView);
  }

  @Query(() => ProductType, { nullable: true, description: 'A product by id, or null.' })
  async product(@Ctx() ctx: Context, @Arg('id', () => ID, { description: 'UUID of the product.' }) id: string) {
    const product = await this.catalog.findProduct(ctx.em, id);
    return product ? toProductView(product) : null;
  }

  @Mutation(() => CreateProductPayload, { description: 'Adds a product to the catalog (admin only). Idempotent by key.' })
  @Idempotent<CreateProductPayload>({ resources: (payload) => [{ type: 'Product', id: payload.product.id }] })
  async createProduct(
    @Ctx() ctx: Context,
    @Arg('input', () => CreateProductInput, { description: 'The new product.' }) input: CreateProductInput,
    @IdempotencyKeyArg() _idempotencyKey: string | null,
  ): Promise<CreateProductPayload> {
    const product = await this.catalog.createProduct(ctx.em, { ...input });
    return { product: toProductView(product) };
  }
}
