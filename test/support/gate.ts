import { Client } from 'pg';
import { withClient } from './database';

/**
 * A gate inside the writes of an order: while it is closed, a transaction reaching it stays in
 * a trigger, polling the gate, with every lock it took and every row it wrote so far held.
 * Unlike a row lock held by the test, this wait is no lock wait, so neither `lock_timeout` nor
 * anything but the test ends it: the test decides, on an event, when the first request may go on.
 */
export interface Gate {
  /** Resolves once `count` transactions (default 1) stand at the gate (polled in pg_stat_activity). */
  untilWaiting(count?: number): Promise<void>;
  /** Lets every transaction at the gate, and every later one, through. */
  open(): Promise<void>;
  /** Opens the gate and removes it (the trigger's table lock waits for the transactions still inside). */
  remove(): Promise<void>;
}

/** How often the test polls pg_stat_activity (the trigger polls the gate every 10 ms). */
const POLL_MS = 10;
const WAIT_LIMIT_MS = 15_000;

/** Where a gate stands: before the order row is written, or before the idempotency record is (after the order). */
export type GatePoint = 'before-order' | 'before-record';

const TRIGGERS: Record<GatePoint, string> = {
  'before-order': 'create trigger test_gate before insert on orders for each row execute function test_gate_wait()',
  'before-record': 'create trigger test_gate before insert on idempotency_records for each row execute function test_gate_wait()',
};
const DROP_TRIGGER: Record<GatePoint, string> = {
  'before-order': 'drop trigger test_gate on orders',
  'before-record': 'drop trigger test_gate on idempotency_records',
};

/** Installs a closed gate at `point` in the database (one gate per database at a time). */
export async function closeGate(databaseUrl: string, point: GatePoint = 'before-order'): Promise<Gate> {
  await withClient(databaseUrl, async (client) => {
    await client.query('create table test_gate (open boolean not null)');
    await client.query('insert into test_gate values (false)');
    // Each loop's select sees the latest committed gate (read committed: one snapshot per statement).
    await client.query(`create function test_gate_wait() returns trigger language plpgsql as $$
      begin
        while not (select open from test_gate) loop
          perform pg_sleep(0.01);
        end loop;
        return new;
      end $$`);
    await client.query(TRIGGERS[point]);
  });
  const client = new Client({ connectionString: databaseUrl });
  await client.connect();
  let removed = false;

  const open = async () => {
    await client.query('update test_gate set open = true');
  };
  return {
    untilWaiting: async (count = 1) => {
      const deadline = Date.now() + WAIT_LIMIT_MS;
      for (;;) {
        const { rows } = await client.query<{ waiting: number }>(
          `select count(*)::int as waiting from pg_stat_activity
            where datname = current_database() and wait_event = 'PgSleep' and pid <> pg_backend_pid()`,
        );
        if (rows[0]!.waiting >= count) return;
        if (Date.now() > deadline) throw new Error(`${rows[0]!.waiting} of ${count} transactions reached the gate`);
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      }
    },
    open,
    remove: async () => {
      if (removed) return;
      removed = true;
      await open();
      await client.query(DROP_TRIGGER[point]);
      await client.query('drop function test_gate_wait()');
      await client.query('drop table test_gate');
      await client.end();
    },
  };
}
