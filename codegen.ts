import type { CodegenConfig } from '@graphql-codegen/cli';

/**
 * Typed documents for the operations clients really send (test/contract/operations), generated
 * from the committed SDL by `npm run codegen`; test/contract/codegen.test.ts fails when the output is stale.
 *
 * No `typescript` plugin: since typescript-operations 6 the operations plugin emits the input and
 * enum types it uses itself, and the two plugins in one file declare them twice (TS2300).
 */
const config: CodegenConfig = {
  schema: 'schema/schema.graphql',
  documents: 'test/contract/operations/*.graphql',
  generates: {
    'test/contract/generated/graphql.ts': {
      plugins: ['typescript-operations', 'typed-document-node'],
      config: {
        scalars: { DateTime: 'string', IdempotencyKey: 'string', ID: 'string' },
        strictScalars: true,
        useTypeImports: true,
      },
    },
  },
};

export default config;
