import 'reflect-metadata';
import { startDatabase } from './fixture';
import { measureRelay, RELAY_DEFAULTS, relayText } from './relay';
import { numberArg, readArgs, runCommand } from './support';

// `npm run bench:events`: the outbox relay alone, on a database of its own; `npm run bench` runs the same measurement.
runCommand(async (cleanup) => {
  const args = readArgs('npm run bench:events', {
    events: { type: 'string', default: String(RELAY_DEFAULTS.backlog), description: 'backlog the relay drains' },
    'lag-events': { type: 'string', default: String(RELAY_DEFAULTS.lagEvents), description: 'events committed one by one for the lag' },
    'poll-ms': { type: 'string', default: String(RELAY_DEFAULTS.pollMs), description: 'EVENTS_RELAY_POLL_MS of the relay' },
  });
  const db = await startDatabase(cleanup);
  const result = await measureRelay(cleanup, db, {
    backlog: numberArg(args, 'events', 1),
    lagEvents: numberArg(args, 'lag-events', 1),
    pollMs: numberArg(args, 'poll-ms', 1),
  });
  process.stdout.write(`${relayText(result)}\n`);
});
