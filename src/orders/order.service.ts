import { LockMode } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import { isAdmin, type Viewer } from '../auth/token';
import { Product } from '../catalog/product.entity';
import { cursorInstant, decodeCursor, encodeCursor, invalidCursor, isUuid, requireUuid } from '../cursor';
import { BadUserInputError, InsufficientStockError, OrderNotCancellableError, OrderNotFoundError, ProductNotFoundError } from '../errors';
import { appendEvent, asOneStatement, type NewEvent, type Statement, withEvent } from '../events';
import type { Page } from '../graphql/connection';
import { characterCount } from '../text';
import { Order, OrderStatus } from './order.entity';
import { orderCancelled, orderPlaced } from './order.events';
import { OrderLine } from './order-line.entity';

export interface NewOrderLine {
  readonly productId: string;
  readonly quantity: number;
}

export interface NewOrder {
  readonly lines: readonly NewOrderLine[];
  readonly note?: string | null;
}

export interface Cancellation {
  readonly orderId: string;
  /** Why; checked against its limit, not stored. */
  readonly reason?: string | null;
}

/** An order with its lines and the products they refer to, as one consistent snapshot. */
export interface PlacedOrder {
  readonly order: Order;
  readonly lines: readonly OrderLine[];
  readonly products: ReadonlyMap<string, Product>;
}

export const MAX_LINES = 100;
export const MAX_QUANTITY = 1000;
export const MAX_NOTE_LENGTH = 500;
export const MAX_REASON_LENGTH = 500;
const MAX_TOTAL_CENTS = 2_147_483_647;

/** How the order rules write their events. */
export interface EventWriter {
  /** Writes `event` in the transaction of `em`. */
  append(em: EntityManager, event: NewEvent): Promise<void>;
  /** `writes` and, with them, `event`: for {@link asOneStatement}. */
  attach(event: NewEvent, writes: readonly Statement[]): readonly Statement[];
}

/** Events go to the outbox, in the mutation's transaction. */
export const OUTBOX: EventWriter = { append: appendEvent, attach: withEvent };

/** Order rules: placing, cancelling and reading a user's orders. */
export class OrderService {
  /** @param events where events go: the {@link OUTBOX} unless a benchmark measures without it */
  constructor(private readonly events: EventWriter = OUTBOX) {}

  /**
   * Places an order inside the caller's transaction. One statement locks the products in id
   * order (so concurrent orders serialise on stock without deadlocking) and takes the stock
   * where enough is left; a second inserts the order, its lines and its OrderPlaced event as
   * they are, with no change-set computation. A check that fails after the decrement throws,
   * which rolls the transaction back. A product id may appear in one line only.
   */
  async placeOrder(em: EntityManager, userId: string, input: NewOrder): Promise<PlacedOrder> {
    const requested = validateOrder(input);
    const ids = [...requested.keys()].sort();
    const taken = await takeStock(em, ids, requested);
    const byId = new Map(taken.map((product) => [product.id, product]));
    if (taken.length < ids.length) await refuseShortOrder(em, ids, byId);

    const currencies = new Set(taken.map((product) => product.currency));
    if (currencies.size > 1) {
      throw new BadUserInputError(`An order has one currency; these products are in ${[...currencies].sort().join(', ')}`);
    }
    const totalCents = input.lines.reduce((sum, line) => {
      return sum + (byId.get(line.productId.toLowerCase()) as Product).priceCents * line.quantity;
    }, 0);
    if (totalCents > MAX_TOTAL_CENTS) {
      throw new BadUserInputError(`The order total exceeds the maximum of ${MAX_TOTAL_CENTS} cents`);
    }

    const order = new Order({
      userId,
      totalCents,
      currency: taken[0]?.currency as string,
      note: input.note ?? null,
    });
    const orderRef = em.getReference(Order, order.id, { wrapped: true });
    const lines = input.lines.map((line, position) => {
      const product = byId.get(line.productId.toLowerCase()) as Product;
      return new OrderLine({
        order: orderRef,
        position,
        product: em.getReference(Product, product.id, { wrapped: true }),
        quantity: line.quantity,
        unitPriceCents: product.priceCents,
      });
    });
    const placed = asOneStatement(this.events.attach(orderPlaced(order, lines), [insertOrder(order), insertLines(lines)]));
    await em.execute(placed.sql, [...placed.params], 'run');
    return { order, lines, products: byId };
  }

  /** Cancels a PLACED order of the viewer (an admin may cancel any) and restores its stock. */
  async cancelOrder(em: EntityManager, viewer: Viewer, cancellation: Cancellation): Promise<PlacedOrder> {
    const id = requireUuid(cancellation.orderId, 'orderId');
    const { reason } = cancellation;
    if (reason !== undefined && reason !== null && characterCount(reason) > MAX_REASON_LENGTH) {
      throw new BadUserInputError(`reason must be at most ${MAX_REASON_LENGTH} characters`);
    }
    const order = await em.findOne(Order, this.visibleTo(viewer, id), {
      lockMode: LockMode.PESSIMISTIC_WRITE,
      refresh: true,
    });
    if (!order) throw new OrderNotFoundError(id);
    if (order.status !== OrderStatus.Placed) throw new OrderNotCancellableError(id, order.status);

    const lines = await em.find(OrderLine, { order: id }, { orderBy: { position: 'asc' } });
    const productIds = [...new Set(lines.map((line) => line.product.id))].sort();
    const products = await em.find(
      Product,
      { id: { $in: productIds } },
      { lockMode: LockMode.PESSIMISTIC_WRITE, orderBy: { id: 'asc' }, refresh: true },
    );
    const byId = new Map(products.map((product) => [product.id, product]));
    for (const line of lines) {
      const product = byId.get(line.product.id);
      if (product) product.stock += line.quantity;
    }
    order.status = OrderStatus.Cancelled;
    order.cancelledAt = new Date();
    await em.flush();
    await this.events.append(em, orderCancelled(order, lines));
    return { order, lines, products: byId };
  }

  /** The order if it exists and the viewer may see it (their own; an admin sees any). */
  async findOrder(em: EntityManager, viewer: Viewer, orderId: string): Promise<Order | null> {
    return em.findOne(Order, this.visibleTo(viewer, requireUuid(orderId, 'id')));
  }

  /** The viewer's orders, newest first. */
  async listOrders(em: EntityManager, userId: string, first: number, after: string | null | undefined): Promise<Page<Order>> {
    let where: object = { userId };
    if (after != null) {
      const [createdAt, id] = decodeCursor('order', after, 2) as [string, string];
      // A forged cursor must not reach PostgreSQL, which would refuse it as a server error.
      const at = cursorInstant(createdAt);
      if (at === undefined || !isUuid(id)) throw invalidCursor();
      where = { userId, $or: [{ createdAt: { $lt: at } }, { createdAt: at, id: { $lt: id } }] };
    }
    const rows = await em.find(Order, where, { orderBy: { createdAt: 'desc', id: 'desc' }, limit: first + 1 });
    return { items: rows.slice(0, first), hasNextPage: rows.length > first };
  }

  orderCursor(order: Order): string {
    return encodeCursor('order', [order.createdAt.toISOString(), order.id]);
  }

  private visibleTo(viewer: Viewer, id: string): { id: string; userId?: string } {
    return isAdmin(viewer) ? { id } : { id, userId: viewer.id };
  }
}

/** Checks the shape of an order and returns the quantity wanted per product id. */
function validateOrder(input: NewOrder): Map<string, number> {
  if (input.lines.length < 1 || input.lines.length > MAX_LINES) {
    throw new BadUserInputError(`An order has 1 to ${MAX_LINES} lines, got ${input.lines.length}`);
  }
  if (input.note !== undefined && input.note !== null && characterCount(input.note) > MAX_NOTE_LENGTH) {
    throw new BadUserInputError(`note must be at most ${MAX_NOTE_LENGTH} characters`);
  }
  const requested = new Map<string, number>();
  input.lines.forEach((line, index) => {
    const id = requireUuid(line.productId, `lines[${index}].productId`);
    if (!Number.isInteger(line.quantity) || line.quantity < 1 || line.quantity > MAX_QUANTITY) {
      throw new BadUserInputError(`lines[${index}].quantity must be from 1 to ${MAX_QUANTITY}, got ${line.quantity}`);
    }
    if (requested.has(id)) {
      throw new BadUserInputError(`Product ${id} appears in more than one line; order it once with the total quantity`);
    }
    requested.set(id, line.quantity);
  });
  return requested;
}

/**
 * Locks the products `ids` (sorted) in id order and takes the requested quantities from those
 * with enough stock, in one statement; returns the products taken from, with their new stock.
 * The CTE `locked` is materialised and sorted before its rows are locked, so the locks are
 * taken in id order whatever plan joins it; only rows it locked are updated.
 */
async function takeStock(em: EntityManager, ids: readonly string[], requested: ReadonlyMap<string, number>): Promise<Product[]> {
  const values = ids.map(() => '(?::uuid, ?::int)').join(', ');
  const rows = await em.execute<ProductRow[]>(
    `with wanted (id, quantity) as (values ${values}),
          locked as materialized (
            select p.id from products p where p.id in (select id from wanted) order by p.id for update
          )
     update products p set stock = p.stock - w.quantity
       from wanted w join locked l on l.id = w.id
      where p.id = w.id and p.stock >= w.quantity
     returning p.id, p.sku, p.name, p.price_cents, p.currency, p.stock, p.created_at`,
    ids.flatMap((id) => [id, requested.get(id) as number]),
  );
  return rows.map(toProduct);
}

/**
 * Why some products were not taken from: missing, then mixed currencies, then too little
 * stock (the order of the checks before any write). The rows are locked by this transaction.
 */
async function refuseShortOrder(em: EntityManager, ids: readonly string[], taken: ReadonlyMap<string, Product>): Promise<never> {
  const rows = await em.execute<{ id: string; currency: string }[]>(
    `select id, currency from products where id in (${ids.map(() => '?').join(', ')})`,
    [...ids],
  );
  const found = new Map(rows.map((row) => [row.id, row.currency]));
  const missing = ids.filter((id) => !found.has(id));
  if (missing.length > 0) throw new ProductNotFoundError(missing);
  const currencies = new Set(found.values());
  if (currencies.size > 1) {
    throw new BadUserInputError(`An order has one currency; these products are in ${[...currencies].sort().join(', ')}`);
  }
  throw new InsufficientStockError(ids.filter((id) => !taken.has(id)));
}

/** The insert of a new order's row, as the entity maps it. */
function insertOrder(order: Order): Statement {
  return {
    sql: 'insert into orders (id, user_id, status, total_cents, currency, note, created_at, cancelled_at) values (?, ?, ?, ?, ?, ?, ?, ?)',
    params: [order.id, order.userId, order.status, order.totalCents, order.currency, order.note, order.createdAt, order.cancelledAt],
  };
}

/** The insert of a new order's lines, as the entity maps them. */
function insertLines(lines: readonly OrderLine[]): Statement {
  const columns = 'order_id, position, product_id, quantity, unit_price_cents, line_total_cents';
  return {
    sql: `insert into order_lines (${columns}) values ${lines.map(() => '(?, ?, ?, ?, ?, ?)').join(', ')}`,
    params: lines.flatMap((line) => [
      line.order.id,
      line.position,
      line.product.id,
      line.quantity,
      line.unitPriceCents,
      line.lineTotalCents,
    ]),
  };
}

interface ProductRow {
  id: string;
  sku: string;
  name: string;
  price_cents: number;
  currency: string;
  stock: number;
  created_at: Date;
}

/** A product as the statement returned it; not managed by the EntityManager (nothing to flush). */
function toProduct(row: ProductRow): Product {
  const product = new Product({ sku: row.sku, name: row.name, priceCents: row.price_cents, currency: row.currency, stock: row.stock });
  product.id = row.id;
  product.createdAt = row.created_at;
  return product;
}
