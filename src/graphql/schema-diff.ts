// Only types come from @graphql-inspector/core: it is a devDependency, so nothing compiled
// into dist may require it at run time except the schema:diff CLI, which passes `diff` in.
import type { Change, CriticalityLevel, diff } from '@graphql-inspector/core';
import { buildSchema } from 'graphql';

/** How a schema change affects existing clients. */
export type ChangeClass = 'breaking' | 'dangerous' | 'safe';

/** One schema change as the schema:diff report prints it. */
export interface ClassifiedChange {
  readonly class: ChangeClass;
  readonly message: string;
  /** Dotted coordinate of the changed element (`Query.orders.first`), when the change has one. */
  readonly path: string | null;
  /** The differ's explanation of why the change may hurt clients, when it gives one. */
  readonly reason: string | null;
}

/** What schema:diff concludes from the changes and the changelog. */
export type Decision =
  | { readonly status: 'compatible'; readonly exitCode: 0 }
  | { readonly status: 'acknowledged'; readonly exitCode: 0; readonly breaking: number }
  | { readonly status: 'unrecorded'; readonly exitCode: 1; readonly breaking: number };

/** The signature of @graphql-inspector/core's `diff`. */
export type SchemaDiffer = typeof diff;

// Keyed by the enum's string values so that no runtime import of the enum is needed.
const CLASS_OF_LEVEL: Readonly<Record<`${CriticalityLevel}`, ChangeClass>> = {
  BREAKING: 'breaking',
  DANGEROUS: 'dangerous',
  NON_BREAKING: 'safe',
};

const CLASS_ORDER: readonly ChangeClass[] = ['breaking', 'dangerous', 'safe'];

/** Maps the differ's criticality levels to change classes, most severe first. */
export function classifyChanges(changes: readonly Change[]): ClassifiedChange[] {
  const classified = changes.map((change) => ({
    class: CLASS_OF_LEVEL[change.criticality.level],
    message: change.message,
    path: change.path ?? null,
    reason: change.criticality.reason ?? null,
  }));
  // Array.prototype.sort is stable, so the differ's order is kept within a class.
  return classified.sort((a, b) => CLASS_ORDER.indexOf(a.class) - CLASS_ORDER.indexOf(b.class));
}

/** Diffs two SDL texts with the given differ and classifies every change. */
export async function compareSdl(oldSdl: string, newSdl: string, differ: SchemaDiffer): Promise<ClassifiedChange[]> {
  return classifyChanges(await differ(buildSchema(oldSdl), buildSchema(newSdl)));
}

/** A breaking change passes only when schema/CHANGELOG.md changed in the same range. */
export function decide(changes: readonly ClassifiedChange[], changelogChanged: boolean): Decision {
  const breaking = changes.filter((change) => change.class === 'breaking').length;
  if (breaking === 0) return { status: 'compatible', exitCode: 0 };
  return changelogChanged ? { status: 'acknowledged', exitCode: 0, breaking } : { status: 'unrecorded', exitCode: 1, breaking };
}
