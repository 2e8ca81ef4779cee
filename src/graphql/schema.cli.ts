import 'reflect-metadata';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../project-root';
import { buildBaseSchema, printSdl } from './schema';

/** `npm run schema:emit`: writes schema/schema.graphql from the code-first schema. */
const file = path.join(projectRoot(), 'schema', 'schema.graphql');
writeFileSync(file, printSdl(buildBaseSchema()));
process.stdout.write(`wrote ${path.relative(process.cwd(), file)}\n`);
