import autocannon from 'autocannon';
import { fmt, percentiles } from './support';

/** One request to send: built fresh for every request autocannon makes. */
export interface NextRequest {
  readonly headers: Record<string, string>;
  readonly body: string;
}

export interface LoadOptions {
  readonly url: string;
  readonly connections: number;
  /** Seconds of measured load (ignored when `until` ends it). */
  readonly seconds: number;
  /** Seconds of the same load first, not measured. */
  readonly warmupSeconds: number;
  readonly next: () => NextRequest;
  /** Requests per second over all connections; default: as fast as the server answers. */
  readonly rate?: number;
  /** Responses must carry `Idempotent-Replayed: true`; others count as errors. */
  readonly expectReplayed?: boolean;
  /** Ends the measured run when it settles (instead of after `seconds`). */
  readonly until?: (elapsed: () => number) => Promise<void>;
}

/** What one measured run produced. */
export interface LoadResult {
  readonly responses: number;
  readonly seconds: number;
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  /** Transport errors and timeouts. */
  readonly transport: number;
  readonly non2xx: number;
  /** 2xx responses whose body carries `errors`. */
  readonly graphqlErrors: number;
  /** Responses that should have been replays and were not. */
  readonly notReplayed: number;
  readonly errors: number;
  /** Completion time (ms since the run started) and latency (ms) of every response. */
  readonly at: Float64Array;
  readonly latency: Float64Array;
  /** A body with an error, to show what went wrong. */
  readonly sampleError?: string;
}

/** Runs the warm-up, then the measured load. */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  if (options.warmupSeconds > 0) await measure({ ...options, seconds: options.warmupSeconds, until: undefined });
  return measure(options);
}

async function measure(options: LoadOptions): Promise<LoadResult> {
  const at: number[] = [];
  const latency: number[] = [];
  let non2xx = 0;
  let graphqlErrors = 0;
  let notReplayed = 0;
  let transport = 0;
  let sampleError: string | undefined;
  const started = performance.now();
  const elapsed = () => performance.now() - started;
  let stopped = false;
  let endedAt: number | undefined;

  const done = new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        method: 'POST',
        connections: options.connections,
        // A run ended by `until` stops itself; the duration is only a bound.
        duration: options.until ? 3_600 : options.seconds,
        timeout: 30,
        overallRate: options.rate,
        requests: [
          {
            setupRequest: (request) => {
              const next = options.next();
              return { ...request, headers: next.headers, body: next.body };
            },
            onResponse: (status, body, _context, responseHeaders) => {
              if (status < 200 || status > 299) {
                non2xx++;
                sampleError ??= `HTTP ${status}: ${body.slice(0, 300)}`;
              } else if (body.includes('"errors"')) {
                graphqlErrors++;
                sampleError ??= body.slice(0, 300);
              } else if (options.expectReplayed && responseHeaders['idempotent-replayed'] !== 'true') {
                notReplayed++;
                sampleError ??= `not replayed: ${body.slice(0, 200)}`;
              }
            },
          },
        ],
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
    instance.on('response', (_client: unknown, _status: number, _bytes: number, responseTime: number) => {
      if (stopped) return;
      at.push(elapsed());
      latency.push(responseTime);
    });
    instance.on('reqError', () => {
      transport++;
    });
    if (options.until) {
      void options.until(elapsed).finally(() => {
        stopped = true;
        endedAt = elapsed();
        instance.stop();
      });
    }
  });
  const result = await done;
  const seconds = (endedAt ?? elapsed()) / 1000;
  transport = Math.max(transport, result.errors + result.timeouts);
  return loadResult(at, latency, seconds, { transport, non2xx, graphqlErrors, notReplayed }, sampleError);
}

type ErrorCounts = Pick<LoadResult, 'transport' | 'non2xx' | 'graphqlErrors' | 'notReplayed'>;

/** A LoadResult from every response's completion time and latency, over `seconds`. */
export function loadResult(
  at: number[],
  latency: number[],
  seconds: number,
  counts: ErrorCounts,
  sampleError: string | undefined,
): LoadResult {
  const [p50, p99] = percentiles(latency, [50, 99]);
  return {
    responses: at.length,
    seconds,
    rps: at.length / seconds,
    p50: p50 as number,
    p99: p99 as number,
    ...counts,
    errors: counts.transport + counts.non2xx + counts.graphqlErrors + counts.notReplayed,
    at: Float64Array.from(at),
    latency: Float64Array.from(latency),
    sampleError,
  };
}

/** Responses per second and latency percentiles of the responses that completed in [fromMs, toMs). */
export function window(result: LoadResult, fromMs: number, toMs: number): { rps: number; p50: number; p99: number; responses: number } {
  const latencies: number[] = [];
  result.at.forEach((time, index) => {
    if (time >= fromMs && time < toMs) latencies.push(result.latency[index] as number);
  });
  const [p50, p99] = percentiles(latencies, [50, 99]);
  return { rps: latencies.length / ((toMs - fromMs) / 1000), p50: p50 as number, p99: p99 as number, responses: latencies.length };
}

/** `first: 512 req/s, p50 12.1 ms, p99 40.2 ms, 0 errors` */
export function summary(name: string, result: LoadResult): string {
  const errors =
    result.errors === 0
      ? '0 errors'
      : `${result.errors} errors (transport ${result.transport}, non-2xx ${result.non2xx}, GraphQL ${result.graphqlErrors}, not replayed ${result.notReplayed}): ${result.sampleError ?? ''}`;
  return `${name}: ${fmt(result.rps)} req/s, p50 ${fmt(result.p50, 1)} ms, p99 ${fmt(result.p99, 1)} ms, ${fmt(result.responses)} responses, ${errors}`;
}

/**
 * Several measured runs of one scenario as one: responses and seconds add up, percentiles come
 * from every latency, and each run's completion times follow the previous run's.
 */
export function combine(runs: readonly LoadResult[]): LoadResult {
  const [only] = runs;
  if (runs.length === 1 && only) return only;
  if (!only) throw new Error('combine needs at least one run');
  const at: number[] = [];
  const latency: number[] = [];
  let offsetMs = 0;
  for (const run of runs) {
    for (const time of run.at) at.push(offsetMs + time);
    for (const ms of run.latency) latency.push(ms);
    offsetMs += run.seconds * 1000;
  }
  const sum = (field: keyof ErrorCounts) => runs.reduce((total, run) => total + run[field], 0);
  return loadResult(
    at,
    latency,
    offsetMs / 1000,
    { transport: sum('transport'), non2xx: sum('non2xx'), graphqlErrors: sum('graphqlErrors'), notReplayed: sum('notReplayed') },
    runs.find((run) => run.sampleError !== undefined)?.sampleError,
  );
}
