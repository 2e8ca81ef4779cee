import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

// The idempotency rules I1-I13 live in docs/idempotency.md; tests cite them by their headings'
// anchors, so a renamed or dropped rule, or a citation of a rule that does not exist, fails here.

const ROOT = path.resolve(__dirname, '..', '..');
const GUIDE = readFileSync(path.join(ROOT, 'docs', 'idempotency.md'), 'utf8');

/** The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens. */
function anchorOf(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^a-z0-9 -]/g, '')
    .replaceAll(' ', '-');
}

/** Every `.ts` file below `dir`, recursively. */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

const rules = [...GUIDE.matchAll(/^### (I(\d+) .+)$/gm)].map((match) => ({ id: Number(match[2]), anchor: anchorOf(match[1]!) }));
const tests = sources(path.join(ROOT, 'test')).map((file) => ({ file: path.relative(ROOT, file), text: readFileSync(file, 'utf8') }));
const citations = tests.flatMap(({ file, text }) =>
  [...text.matchAll(/#(i\d+-[a-z0-9-]+)/g)].map((match) => ({ file, anchor: match[1]! })),
);

describe('the idempotency rules of docs/idempotency.md', () => {
  it('holds rules I1 to I13, in order, each under a heading of its own', () => {
    expect(rules.map((rule) => rule.id)).toEqual(Array.from({ length: 13 }, (_, index) => index + 1));
  });

  it('has a heading for every rule a test cites', () => {
    const anchors = new Set(rules.map((rule) => rule.anchor));
    expect(citations.length).toBeGreaterThan(0);
    expect(citations.filter((citation) => !anchors.has(citation.anchor))).toEqual([]);
  });

  it('has every rule cited by at least one test', () => {
    const cited = new Set(citations.map((citation) => citation.anchor));
    expect(rules.filter((rule) => !cited.has(rule.anchor)).map((rule) => rule.anchor)).toEqual([]);
  });
});
