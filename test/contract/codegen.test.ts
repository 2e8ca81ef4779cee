import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { CodegenConfig } from '@graphql-codegen/cli';
import config from '../../codegen';

const ROOT = path.resolve(__dirname, '../..');
const OUTPUT = 'test/contract/generated/graphql.ts';

// The CLI requires ESM-only packages (yargs 18, chalk 5) that jest's CommonJS runtime cannot load,
// so `generate` runs in a plain Node process (which can) with the same config, writing nothing.
const GENERATE = `
const { generate } = require('@graphql-codegen/cli');
generate(JSON.parse(process.argv[1]), false).then(
  (files) => process.stdout.write(JSON.stringify(files.map(({ filename, content }) => ({ filename, content })))),
  (error) => { console.error(error); process.exit(1); },
);`;

/** Runs the repository's codegen config in memory and returns the text it would write to OUTPUT. */
async function generateInMemory(overrides: Partial<CodegenConfig> = {}): Promise<string> {
  const input = { ...config, ...overrides, cwd: ROOT, silent: true };
  const { stdout } = await promisify(execFile)(process.execPath, ['-e', GENERATE, JSON.stringify(input)], {
    cwd: ROOT,
    maxBuffer: 16 * 1024 * 1024,
  });
  const files = JSON.parse(stdout) as { filename: string; content: string }[];
  const file = files.find((candidate) => path.resolve(ROOT, candidate.filename) === path.resolve(ROOT, OUTPUT));
  if (!file) throw new Error(`codegen produced no ${OUTPUT} (got: ${files.map((candidate) => candidate.filename).join(', ')})`);
  return file.content;
}

/** Describes the first line where two texts differ, for a readable failure. */
function firstDifference(committed: string, generated: string): string {
  const a = committed.split('\n');
  const b = generated.split('\n');
  const line = a.findIndex((text, index) => text !== b[index]);
  const at = line === -1 ? a.length : line;
  return `first difference at line ${at + 1}:\n  committed: ${JSON.stringify(a[at])}\n  generated: ${JSON.stringify(b[at])}`;
}

describe(OUTPUT, () => {
  it('matches what codegen generates from schema/schema.graphql and test/contract/operations', async () => {
    const committed = readFileSync(path.join(ROOT, OUTPUT), 'utf8');
    const generated = await generateInMemory();
    if (committed !== generated) {
      throw new Error(`${OUTPUT} is stale: run \`npm run codegen\` and commit the result (${firstDifference(committed, generated)})`);
    }
    expect(committed).toBe(generated);
  });

  it('differs from the committed file once an operation selects another field, so staleness is detected', async () => {
    const directory = mkdtempSync(path.join(os.tmpdir(), 'contract-operations-'));
    try {
      cpSync(path.join(ROOT, 'test/contract/operations'), directory, { recursive: true });
      const viewer = path.join(directory, 'Viewer.graphql');
      writeFileSync(viewer, readFileSync(viewer, 'utf8').replace(/\broles\b/, 'roles\n    __typename'));

      const changed = await generateInMemory({ documents: path.join(directory, '*.graphql') });

      expect(changed).toContain("__typename: 'Viewer'");
      expect(changed).not.toBe(readFileSync(path.join(ROOT, OUTPUT), 'utf8'));
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
