import type { EntityManager } from '@mikro-orm/postgresql';
import { decodeCursor, encodeCursor, invalidCursor } from '../cursor';
import type { Page } from '../graphql/connection';

/** An event as the feed and the relay read it. */
export interface StoredEvent {
  readonly seq: string;
  readonly id: string;
  readonly type: string;
  readonly occurredAt: Date;
  readonly data: Record<string, unknown>;
  /** The writing transaction's id (xid8), as decimal text. */
  readonly xid: string;
}

interface EventRow {
  seq: string;
  id: string;
  type: string;
  occurred_at: Date;
  data: Record<string, unknown>;
  xid_text: string;
}

const MAX_XID8 = 2n ** 64n - 1n;
const MAX_BIGINT = 2n ** 63n - 1n;

/**
 * Reads events in transaction order, `(xid, seq)`, after a cursor. Only events whose
 * transaction id is below the snapshot's xmin are returned: every transaction below it has
 * ended, and any transaction still to write gets a larger id, so no event can later appear
 * before a position already returned. A transaction that commits late only holds the feed
 * back until it ends; it is never skipped.
 */
export async function readEvents(em: EntityManager, first: number, after: string | null | undefined): Promise<Page<StoredEvent>> {
  const [xid, seq] = after == null ? ['0', '0'] : parseCursor(after);
  const rows = await em.getConnection().execute<EventRow[]>(
    `select seq, id, type, occurred_at, data, xid::text as xid_text
       from outbox_events
      where xid < pg_snapshot_xmin(pg_current_snapshot())
        and (xid, seq) > (?::xid8, ?::bigint)
      order by outbox_events.xid, seq
      limit ?`,
    [xid, seq, first + 1],
  );
  const items = rows.slice(0, first).map((row) => ({
    seq: String(row.seq),
    id: row.id,
    type: row.type,
    occurredAt: new Date(row.occurred_at),
    data: row.data,
    xid: row.xid_text,
  }));
  return { items, hasNextPage: rows.length > first };
}

/** The opaque cursor of an event: its position `(xid, seq)`. */
export function eventCursor(event: StoredEvent): string {
  return encodeCursor('event', [event.xid, event.seq]);
}

// A forged cursor must not reach PostgreSQL, which would refuse it as a server error.
function parseCursor(cursor: string): [string, string] {
  const [xid, seq] = decodeCursor('event', cursor, 2) as [string, string];
  if (!inRange(xid, MAX_XID8) || !inRange(seq, MAX_BIGINT)) throw invalidCursor();
  return [xid, seq];
}

function inRange(value: string, max: bigint): boolean {
  return /^(0|[1-9]\d{0,19})$/.test(value) && BigInt(value) <= max;
}
