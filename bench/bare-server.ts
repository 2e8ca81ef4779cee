import 'reflect-metadata';
import { ApolloServer } from '@apollo/server';
import { startStandaloneServer } from '@apollo/server/standalone';
import { buildSchema, Query, Resolver } from 'type-graphql';
import type { ReadyLine } from './server';
import { describeError, numberArg, readArgs } from './support';

/** The one field of the bare server. */
@Resolver()
class HelloResolver {
  @Query(() => String, { description: 'A constant.' })
  hello(): string {
    return 'world';
  }
}

/**
 * A bench-only anchor (never part of the API): Apollo Server 5 standalone with a TypeGraphQL
 * schema of one `hello` field and nothing else (no Fastify, middleware, permissions, logging
 * or metrics), so that `npm run bench` can compare the API's own floor with it.
 */
async function serve(): Promise<void> {
  const args = readArgs('node dist/bench/bare-server.js', {
    port: { type: 'string', default: '0', description: 'port on 127.0.0.1; 0 picks a free one' },
  });
  const schema = await buildSchema({ resolvers: [HelloResolver], validate: false, emitSchemaFile: false });
  const server = new ApolloServer({ schema });
  const { url } = await startStandaloneServer(server, { listen: { port: numberArg(args, 'port', 0), host: '127.0.0.1' } });
  const stop = () => void server.stop().finally(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  const ready: ReadyLine = { event: 'ready', port: Number(new URL(url).port), pid: process.pid };
  process.stdout.write(`${JSON.stringify(ready)}\n`);
}

serve().catch((error: unknown) => {
  process.stderr.write(`bare server failed: ${describeError(error, true)}\n`);
  process.exit(1);
});
