import { readFile } from 'node:fs/promises';

/** The parts of a V8 CPU profile (.cpuprofile, as node --cpu-prof writes it) read here. */
interface CpuProfile {
  readonly nodes: readonly { id: number; callFrame: { functionName: string; url: string } }[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Self time of one group of functions. */
export interface ProfileShare {
  readonly where: string;
  readonly ms: number;
  /** Of the busy time (idle and the profiler's own calls excluded). */
  readonly share: number;
}

/**
 * Self time of a CPU profile by package: `node_modules/<package>` for libraries, `src/<folder>`
 * for the app, Node's own JavaScript by module area, garbage collection, V8 and native code (`(program)`),
 * and each native function by name (socket writes show as `writev`, `writeBuffer`).
 */
export async function profileByPackage(file: string): Promise<{ busyMs: number; idleMs: number; shares: ProfileShare[] }> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const groupOf = new Map(profile.nodes.map((node) => [node.id, group(node.callFrame)]));
  const totals = new Map<string, number>();
  profile.samples.forEach((id, index) => {
    // Each sample's delta is the time since the previous one: it is charged to this sample.
    const where = groupOf.get(id) ?? '(unknown)';
    totals.set(where, (totals.get(where) ?? 0) + (profile.timeDeltas[index] ?? 0) / 1000);
  });
  const idleMs = totals.get('(idle)') ?? 0;
  totals.delete('(idle)');
  // The profiler's own start and stop (node:inspector) are not the server's work.
  totals.delete('node:inspector');
  const busyMs = [...totals.values()].reduce((sum, ms) => sum + ms, 0);
  const shares = [...totals.entries()].map(([where, ms]) => ({ where, ms, share: ms / busyMs })).sort((a, b) => b.ms - a.ms);
  return { busyMs, idleMs, shares };
}

function group(frame: { functionName: string; url: string }): string {
  const { functionName, url } = frame;
  if (functionName === '(idle)') return '(idle)';
  if (functionName === '(garbage collector)') return 'garbage collection';
  if (functionName === '(program)') return 'V8 and native code (program)';
  const modules = url.lastIndexOf('/node_modules/');
  if (modules >= 0) {
    const [scope, name] = url.slice(modules + '/node_modules/'.length).split('/');
    return scope?.startsWith('@') ? `${scope}/${name}` : (scope ?? url);
  }
  // Node's own modules by area: node:internal/streams/writable -> node:internal/streams.
  if (url.startsWith('node:'))
    return url
      .split('/')
      .slice(0, url.startsWith('node:internal/') ? 2 : 1)
      .join('/');
  const app = /\/dist\/(src|bench)\/([^/]+)\//.exec(url) ?? /\/dist\/(src|bench)\/()[^/]+$/.exec(url);
  if (app) return app[2] ? `${app[1]}/${app[2]}` : (app[1] as string);
  if (url === '') return `native: ${functionName || '(anonymous)'}`;
  return url;
}
