import { execFile } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const ROOT = path.resolve(__dirname, '../..');
const OUTPUT = 'test/contract/generated/graphql.ts';

// The codegen plugins require ESM-only packages that jest's CommonJS runtime cannot load, so the
// generator (codegen.ts, built to dist/) runs in a plain Node process, writing nothing.
const GENERATE = `
require(process.argv[1]).generateContractTypes(process.argv[2]).then(
  (content) => process.stdout.write(content),
  (error) => { console.error(error); process.exit(1); },
);`;

/** What `npm run codegen` would write to OUTPUT for the operations in `operationsDir`. */
async function generateContractTypes(operationsDir?: string): Promise<string> {
  const args = ['-e', GENERATE, path.join(ROOT, 'dist', 'codegen.js'), ...(operationsDir ? [operationsDir] : [])];
  const { stdout } = await promisify(execFile)(process.execPath, args, { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 });
  return stdout;
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
    const generated = await generateContractTypes();
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

      const changed = await generateContractTypes(directory);

      expect(changed).toContain("__typename: 'Viewer'");
      expect(changed).not.toBe(readFileSync(path.join(ROOT, OUTPUT), 'utf8'));
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
