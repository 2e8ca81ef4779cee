import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { diff } from '@graphql-inspector/core';
import { projectRoot } from '../project-root';
import { type ClassifiedChange, compareSdl, type Decision, decide } from './schema-diff';

/**
 * `npm run schema:diff -- <git-ref>`: compares schema/schema.graphql at <git-ref> with the
 * working tree and prints every change as breaking, dangerous or safe. Exit codes: 0 no
 * breaking change, or breaking changes recorded in schema/CHANGELOG.md since <git-ref>;
 * 1 breaking changes not recorded; 2 the comparison could not be made (usage, unknown ref,
 * unreadable SDL).
 */
const SCHEMA = 'schema/schema.graphql';
const CHANGELOG = 'schema/CHANGELOG.md';
const USAGE = 'usage: npm run schema:diff -- <git-ref>';

const root = projectRoot();

function git(args: readonly string[]): { status: number; stdout: string; stderr: string } {
  const result = spawnSync('git', args, { cwd: root, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (result.error) throw new Error(`cannot run git: ${result.error.message}`);
  return { status: result.status ?? 1, stdout: result.stdout, stderr: result.stderr };
}

function resolveCommit(ref: string): string {
  // A leading dash would be read by git as an option, not a ref.
  if (ref.startsWith('-')) throw new Error(`not a git ref: ${ref}\n${USAGE}`);
  const result = git(['rev-parse', '--verify', '--quiet', '--end-of-options', `${ref}^{commit}`]);
  if (result.status !== 0) throw new Error(`unknown git ref: ${ref} (no commit by that name in ${root})`);
  return result.stdout.trim();
}

/** The file's text at the commit, or null when the commit does not have it. */
function fileAt(commit: string, file: string): string | null {
  // `./` makes the path relative to the project root even when the repository root is above it.
  const spec = `${commit}:./${file}`;
  if (git(['cat-file', '-e', spec]).status !== 0) return null;
  const result = git(['show', spec]);
  if (result.status !== 0) throw new Error(`git show ${spec} failed: ${result.stderr.trim()}`);
  return result.stdout;
}

function workingFile(file: string): string | null {
  const absolute = path.join(root, file);
  return existsSync(absolute) ? readFileSync(absolute, 'utf8') : null;
}

function formatChange(change: ClassifiedChange): string {
  const where = change.path ? `${change.path}: ` : '';
  const why = change.reason && change.class !== 'safe' ? `\n    why: ${change.reason}` : '';
  return `  ${change.class.padEnd(9)} ${where}${change.message}${why}`;
}

function verdict(decision: Decision, ref: string): string {
  switch (decision.status) {
    case 'compatible':
      return 'no breaking change';
    case 'acknowledged':
      return `${decision.breaking} breaking change(s), acknowledged: ${CHANGELOG} changed since ${ref}`;
    case 'unrecorded':
      return `${decision.breaking} breaking change(s) not recorded: describe them in ${CHANGELOG} in the same commit`;
    default: {
      const unreachable: never = decision;
      throw new Error(`unhandled decision ${JSON.stringify(unreachable)}`);
    }
  }
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv.length !== 1 || !argv[0]) throw new Error(USAGE);
  const ref = argv[0];
  const commit = resolveCommit(ref);
  const before = fileAt(commit, SCHEMA);
  if (before === null) {
    process.stdout.write(`${ref} has no ${SCHEMA}: nothing to compare against\n`);
    return 0;
  }
  const after = workingFile(SCHEMA);
  if (after === null) throw new Error(`${SCHEMA} is missing: run \`npm run schema:emit\``);

  const changes = await compareSdl(before, after, diff);
  // Comparing contents covers a changelog edited in commits since the ref, staged, unstaged or new.
  const decision = decide(changes, fileAt(commit, CHANGELOG) !== workingFile(CHANGELOG));
  const counts = (['breaking', 'dangerous', 'safe'] as const).map((kind) => `${changes.filter((c) => c.class === kind).length} ${kind}`);
  process.stdout.write(`${SCHEMA}: ${ref} (${commit.slice(0, 12)}) -> working tree: ${changes.length} change(s), ${counts.join(', ')}\n`);
  for (const change of changes) process.stdout.write(`${formatChange(change)}\n`);
  (decision.exitCode === 0 ? process.stdout : process.stderr).write(`schema:diff: ${verdict(decision, ref)}\n`);
  return decision.exitCode;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`schema:diff: ${error instanceof Error ? error.message : String(error)}\n`);
    // 1 is reserved for the verdict "unrecorded breaking change"; anything else could not compare.
    process.exitCode = 2;
  },
);
