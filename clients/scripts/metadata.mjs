// Writes clients/src/schema.generated.ts from schema/schema.graphql: the Mutation fields that take
// an idempotency key. Run by `npm run clients:metadata` after the schema changes.
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { parse } = require('graphql');
const { idempotentMutationsFromSchema } = require('../dist/operation.js');

const root = fileURLToPath(new URL('../..', import.meta.url));
const fields = idempotentMutationsFromSchema(parse(readFileSync(`${root}schema/schema.graphql`, 'utf8')));
const list = fields.map((field) => `'${field}'`).join(', ');
writeFileSync(
  `${root}clients/src/schema.generated.ts`,
  `// Generated from schema/schema.graphql by \`npm run clients:metadata\`; a test fails when it is stale.
/** The Mutation fields of this API that take an idempotency key. */
export const IDEMPOTENT_MUTATIONS: readonly string[] = [${list}];
`,
);
console.log(`clients/src/schema.generated.ts: ${list}`);
