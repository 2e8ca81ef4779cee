import { existsSync } from 'node:fs';
import path from 'node:path';

let root: string | undefined;

/** The folder holding package.json, whether running from src/ (tests) or dist/src/ (build). */
export function projectRoot(): string {
  if (root) return root;
  let dir = __dirname;
  while (!existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('package.json not found above the source folder');
    dir = parent;
  }
  root = dir;
  return root;
}
