import { readFileSync } from 'node:fs';
import path from 'node:path';
import semver from 'semver';

// `npm install` on the Node.js version the project declares must not warn EBADENGINE: every
// locked package, development tools included, has to support the oldest declared version.

const ROOT = path.resolve(__dirname, '..');
const manifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
const lock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { version?: string; engines?: { node?: string } | string[] }>;
};

describe('declared Node.js engine', () => {
  const oldest = semver.minVersion(manifest.engines.node);

  it('is a range with a lowest version', () => {
    expect(oldest?.version).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('is supported by every package in package-lock.json', () => {
    const unsupported = Object.entries(lock.packages)
      .filter(([location, entry]) => {
        const range = !Array.isArray(entry.engines) ? entry.engines?.node : undefined;
        return location !== '' && range !== undefined && !semver.satisfies(oldest?.version ?? '0.0.0', range);
      })
      .map(
        ([location, entry]) => `${location.replace(/^.*node_modules\//, '')}@${entry.version} wants node ${JSON.stringify(entry.engines)}`,
      );
    expect(unsupported).toEqual([]);
  });
});
