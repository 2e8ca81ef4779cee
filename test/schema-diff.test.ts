import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { diff } from '@graphql-inspector/core';
import { type ClassifiedChange, compareSdl, decide } from '../src/graphql/schema-diff';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join('dist', 'src', 'graphql', 'schema-diff.cli.js');

const BASE = `
  "Reads" type Query { "An order" order(id: ID!): Order }
  "An order" type Order { "Id" id: ID!  "Status" status: Status!  "Note" note: String }
  "Lifecycle" enum Status { PLACED CANCELLED }
`;

async function classesOf(oldSdl: string, newSdl: string): Promise<string[]> {
  return (await compareSdl(oldSdl, newSdl, diff)).map((change) => change.class);
}

function change(kind: ClassifiedChange['class']): ClassifiedChange {
  return { class: kind, message: `a ${kind} change`, path: 'Query.order', reason: null };
}

describe('compareSdl', () => {
  it('finds no change between identical schemas', async () => {
    expect(await classesOf(BASE, BASE)).toEqual([]);
  });

  it('classifies removing a field as breaking, with its path and message', async () => {
    const changes = await compareSdl(BASE, BASE.replace('"Note" note: String', ''), diff);
    expect(changes).toEqual([
      expect.objectContaining({ class: 'breaking', path: 'Order.note', message: "Field 'note' was removed from object type 'Order'" }),
    ]);
    expect(changes[0]?.reason).toMatch(/breaking/);
  });

  it('classifies adding a required argument as breaking', async () => {
    expect(await classesOf(BASE, BASE.replace('order(id: ID!)', 'order(id: ID!, tenant: ID!)'))).toEqual(['breaking']);
  });

  // graphql-inspector (like graphql-js) rates it DANGEROUS rather than NON_BREAKING: a resolver
  // may now behave differently, although every existing operation stays valid.
  it('does not classify adding an optional argument as breaking', async () => {
    expect(await classesOf(BASE, BASE.replace('order(id: ID!)', 'order(id: ID!, tenant: ID)'))).toEqual(['dangerous']);
  });

  it('classifies adding an enum value as dangerous', async () => {
    expect(await classesOf(BASE, BASE.replace('PLACED CANCELLED', 'PLACED CANCELLED REFUNDED'))).toEqual(['dangerous']);
  });

  it('classifies changing a description as safe', async () => {
    expect(await classesOf(BASE, BASE.replace('"Note"', '"Free text from the buyer"'))).toEqual(['safe']);
  });

  it('lists breaking changes first, then dangerous, then safe', async () => {
    const changed = BASE.replace('"Note"', '"Free text"')
      .replace('PLACED CANCELLED', 'PLACED CANCELLED REFUNDED')
      .replace('"Id" id: ID!', '');
    expect(await classesOf(BASE, changed)).toEqual(['breaking', 'dangerous', 'safe']);
  });
});

describe('decide', () => {
  it('passes dangerous and safe changes whether or not the changelog changed', () => {
    expect(decide([change('dangerous'), change('safe')], false)).toEqual({ status: 'compatible', exitCode: 0 });
    expect(decide([], true)).toEqual({ status: 'compatible', exitCode: 0 });
  });

  it('accepts a breaking change recorded in the changelog', () => {
    expect(decide([change('breaking'), change('safe')], true)).toEqual({ status: 'acknowledged', exitCode: 0, breaking: 1 });
  });

  it('fails a breaking change the changelog does not record', () => {
    expect(decide([change('breaking'), change('breaking')], false)).toEqual({ status: 'unrecorded', exitCode: 1, breaking: 2 });
  });
});

function runCli(cwd: string, args: readonly string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [path.join(cwd, CLI), ...args], { cwd, encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('npm run schema:diff in this repository', () => {
  beforeAll(() => {
    if (!existsSync(path.join(ROOT, CLI))) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
  });

  it('exits 0 against HEAD: the committed contract has no unrecorded breaking change', () => {
    const result = runCli(ROOT, ['HEAD']);
    expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: '' });
    expect(result.stdout).toMatch(/^schema\/schema\.graphql: HEAD \([0-9a-f]{12}\) -> working tree: /);
  });

  it('exits 2 with the usage when no ref is given', () => {
    const result = runCli(ROOT, []);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('usage: npm run schema:diff -- <git-ref>');
  });

  it('exits 2 naming the ref when git does not know it', () => {
    const result = runCli(ROOT, ['no-such-ref-anywhere']);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain('unknown git ref: no-such-ref-anywhere');
  });
});

// A throwaway repository holding a copy of the built CLI, so the exit codes that need commits
// (a breaking change with and without a changelog entry) run against real git history.
describe('npm run schema:diff in a repository with history', () => {
  let repo: string;
  const git = (...args: string[]): void => {
    const result = spawnSync('git', ['-c', 'user.name=test', '-c', 'user.email=test@example.com', '-c', 'commit.gpgsign=false', ...args], {
      cwd: repo,
      encoding: 'utf8',
    });
    if (result.status !== 0) throw new Error(`git ${args.join(' ')} failed: ${result.stderr}`);
  };
  const write = (file: string, text: string): void => {
    mkdirSync(path.dirname(path.join(repo, file)), { recursive: true });
    writeFileSync(path.join(repo, file), text);
  };

  beforeAll(() => {
    repo = mkdtempSync(path.join(os.tmpdir(), 'schema-diff-'));
    cpSync(path.join(ROOT, 'dist', 'src'), path.join(repo, 'dist', 'src'), { recursive: true });
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(repo, 'node_modules'), 'dir');
    write('package.json', '{ "private": true }\n');
    write('.gitignore', 'dist\nnode_modules\n');
    git('init', '-q');
    git('add', '.');
    git('commit', '-q', '-m', 'no schema yet');
    git('tag', 'before-schema');
    write('schema/schema.graphql', BASE);
    write('schema/CHANGELOG.md', '# Changelog\n');
    git('add', '.');
    git('commit', '-q', '-m', 'schema');
  });
  afterAll(() => {
    rmSync(repo, { recursive: true, force: true });
  });

  it('exits 0 when the ref has no schema to compare against', () => {
    const result = runCli(repo, ['before-schema']);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('before-schema has no schema/schema.graphql');
  });

  it('exits 1 for a breaking change the changelog does not record, listing it', () => {
    write('schema/schema.graphql', BASE.replace('"Note" note: String', ''));
    const result = runCli(repo, ['HEAD']);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/breaking {2}Order\.note: Field 'note' was removed/);
    expect(result.stderr).toContain('1 breaking change(s) not recorded');
  });

  it('exits 0 for the same breaking change once the changelog records it in a later commit', () => {
    write('schema/schema.graphql', BASE.replace('"Note" note: String', ''));
    write('schema/CHANGELOG.md', '# Changelog\n\n## 0.2.0\n\n- Breaking: removed `Order.note`.\n');
    git('commit', '-q', '-am', 'remove Order.note');
    const result = runCli(repo, ['HEAD~1']);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('acknowledged: schema/CHANGELOG.md changed since HEAD~1');
  });
});
