import { readFile } from 'node:fs/promises';
import { type ParseArgsConfig, parseArgs } from 'node:util';

/** Secret shared by the bench servers and the runners that mint their tokens. Loopback only. */
export const BENCH_JWT_SECRET = 'bench-only-secret-never-used-outside-loopback-0123456789';

type OptionSpec = NonNullable<ParseArgsConfig['options']>[string] & { readonly description: string; readonly default?: string };

/** Command-line options as strings, after `--help` has been answered. */
export function readArgs(command: string, options: Record<string, OptionSpec>): Record<string, string> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { ...options, help: { type: 'boolean', description: 'print the options' } },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    const lines = Object.entries(options).map(([name, spec]) => {
      const fallback = spec.default === undefined ? '' : ` (default ${spec.default})`;
      return `  --${name.padEnd(16)} ${spec.description}${fallback}`;
    });
    process.stdout.write(`Usage: ${command} -- [options]\n${lines.join('\n')}\n`);
    process.exit(0);
  }
  return values as Record<string, string>;
}

/** A numeric option, validated: a clear message instead of NaN deep inside a run. */
export function numberArg(values: Record<string, string>, name: string, min: number, integer = true): number {
  const raw = values[name];
  const value = Number(raw);
  if (raw === undefined || raw === '' || !Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
    throw new UsageError(`--${name} must be ${integer ? 'a whole number' : 'a number'} of at least ${min}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/** A bad command line: reported without a stack trace. */
export class UsageError extends Error {}

/** The command as typed, for the results file. */
export function commandLine(script: string): string {
  const args = process.argv.slice(2);
  return args.length > 0 ? `npm run ${script} -- ${args.join(' ')}` : `npm run ${script}`;
}

/** Teardown steps, run last-in first-out exactly once (normal end, error, or signal). */
/**
 * For a pg.Pool's 'error' event: an idle pooled client lost its connection (PostgreSQL stopping
 * at the end of a command, say). Without a listener, node-postgres throws it and the process dies.
 */
export function reportIdleClientError(error: Error): void {
  process.stderr.write(`an idle database connection failed: ${error.message}\n`);
}

export class Cleanup {
  private readonly tasks: { name: string; run: () => Promise<void> }[] = [];
  private running: Promise<void> | undefined;

  add(name: string, run: () => Promise<void>): void {
    this.tasks.push({ name, run });
  }

  run(): Promise<void> {
    this.running ??= (async () => {
      for (let task = this.tasks.pop(); task; task = this.tasks.pop()) {
        try {
          await task.run();
        } catch (error) {
          process.stderr.write(`cleanup: ${task.name} failed: ${describeError(error)}\n`);
        }
      }
    })();
    return this.running;
  }
}

/**
 * Runs a bench command: whatever it registers in its {@link Cleanup} is undone when it ends,
 * fails, or is interrupted (SIGINT/SIGTERM), and the process then exits.
 */
export function runCommand(body: (cleanup: Cleanup) => Promise<void>): void {
  const cleanup = new Cleanup();
  const interrupt = (signal: NodeJS.Signals) => {
    process.stderr.write(`\n${signal}: stopping the servers and the database...\n`);
    void cleanup.run().finally(() => process.exit(130));
  };
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);
  void (async () => {
    let code = 0;
    try {
      await body(cleanup);
    } catch (error) {
      code = error instanceof UsageError ? 64 : 1;
      process.stderr.write(`${error instanceof UsageError ? error.message : describeError(error, true)}\n`);
    } finally {
      await cleanup.run();
    }
    process.exit(code);
  })();
}

export function describeError(error: unknown, stack = false): string {
  if (error instanceof Error) return stack && error.stack ? error.stack : error.message;
  return String(error);
}

/** A field of /proc/<pid>/status in bytes (VmRSS: current, VmHWM: peak resident set); undefined once the process is gone. */
export async function procMemory(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Clock ticks per second of /proc/<pid>/stat's times (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

/**
 * CPU time (user + system) of another process so far, seconds, from /proc/<pid>/stat: the same
 * counters process.cpuUsage() reads inside it (getrusage), at 10 ms resolution.
 */
export async function procCpuSeconds(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The fields after the command name (which may hold spaces) start with the state, field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / USER_HZ;
  } catch {
    return undefined;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Waits until `pid` has exited, polling; false when it is still alive after `ms`. */
export async function waitForExit(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(50);
  }
  return true;
}

/** Ends a process by pid: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopPid(pid: number, graceMs: number): Promise<void> {
  if (!isAlive(pid)) return;
  process.kill(pid, 'SIGTERM');
  if (await waitForExit(pid, graceMs)) return;
  process.kill(pid, 'SIGKILL');
  await waitForExit(pid, 5_000);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The nearest-rank percentile of unsorted samples; NaN when there are none. */
export function percentile(samples: ArrayLike<number>, p: number): number {
  return percentiles(samples, [p])[0] as number;
}

/** Several nearest-rank percentiles with one sort. */
export function percentiles(samples: ArrayLike<number>, ps: readonly number[]): number[] {
  if (samples.length === 0) return ps.map(() => Number.NaN);
  const sorted = Float64Array.from(samples).sort();
  return ps.map((p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number);
}

/** Least-squares slope of y over x. */
export function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  if (n < 2) return Number.NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += ((xs[i] as number) - mx) * ((ys[i] as number) - my);
    den += ((xs[i] as number) - mx) ** 2;
  }
  return den === 0 ? Number.NaN : num / den;
}

/** Formatting for tables: fixed decimals, thousands separators, `n/a` for missing values. */
export function fmt(value: number | undefined, decimals = 0): string {
  if (value === undefined || !Number.isFinite(value)) return 'n/a';
  return value.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

export function mib(bytes: number | undefined): string {
  return bytes === undefined ? 'n/a' : `${fmt(bytes / 1024 / 1024, 0)} MiB`;
}

/** A markdown table. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}
