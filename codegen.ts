import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { codegen } from '@graphql-codegen/core';
import * as typedDocumentNode from '@graphql-codegen/typed-document-node';
import * as typescriptOperations from '@graphql-codegen/typescript-operations';
import { parse } from 'graphql';
import { projectRoot } from './src/project-root';

/**
 * Typed documents for the operations clients really send (test/contract/operations), generated
 * from the committed SDL by `npm run codegen`; test/contract/codegen.test.ts fails when the output is stale.
 *
 * It drives @graphql-codegen/core directly: the codegen CLI would add loaders for URLs, GitHub
 * and Apollo Studio that this project never uses, and they require a newer Node.js than ours.
 *
 * No `typescript` plugin: since typescript-operations 6 the operations plugin emits the input and
 * enum types it uses itself, and the two plugins in one file declare them twice (TS2300).
 */

const ROOT = projectRoot();

/** Where the generated file is written, relative to the repository root. */
export const CODEGEN_OUTPUT = 'test/contract/generated/graphql.ts';
/** The operations it is generated from. */
export const OPERATIONS_DIR = path.join(ROOT, 'test', 'contract', 'operations');

/** The text of {@link CODEGEN_OUTPUT} for the `.graphql` operations in `operationsDir`. */
export async function generateContractTypes(operationsDir: string = OPERATIONS_DIR): Promise<string> {
  const documents = readdirSync(operationsDir)
    .filter((file) => file.endsWith('.graphql'))
    .sort()
    .map((file) => {
      const location = path.join(operationsDir, file);
      return { location, document: parse(readFileSync(location, 'utf8')) };
    });
  return codegen({
    filename: CODEGEN_OUTPUT,
    schema: parse(readFileSync(path.join(ROOT, 'schema', 'schema.graphql'), 'utf8')),
    documents,
    plugins: [{ 'typescript-operations': {} }, { 'typed-document-node': {} }],
    pluginMap: { 'typescript-operations': typescriptOperations, 'typed-document-node': typedDocumentNode },
    config: {
      scalars: { DateTime: 'string', IdempotencyKey: 'string', ID: 'string', JSON: 'unknown' },
      strictScalars: true,
      useTypeImports: true,
    },
  });
}

if (require.main === module) {
  generateContractTypes().then(
    (content) => {
      writeFileSync(path.join(ROOT, CODEGEN_OUTPUT), content);
      process.stdout.write(`wrote ${CODEGEN_OUTPUT}\n`);
    },
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
