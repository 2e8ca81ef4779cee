import type { EntityManager } from '@mikro-orm/postgresql';
import DataLoader from 'dataloader';
import { OrderLine } from './order-line.entity';

/** Loads the lines of many orders in one statement per batch; one loader per request. */
export function linesByOrderIdLoader(em: EntityManager): DataLoader<string, OrderLine[]> {
  return new DataLoader(async (orderIds) => {
    const lines = await em.find(OrderLine, { order: { $in: [...orderIds] } }, { orderBy: { order: 'asc', position: 'asc' } });
    const byOrder = new Map<string, OrderLine[]>();
    for (const line of lines) {
      const list = byOrder.get(line.order.id) ?? [];
      list.push(line);
      byOrder.set(line.order.id, list);
    }
    return orderIds.map((id) => byOrder.get(id) ?? []);
  });
}
