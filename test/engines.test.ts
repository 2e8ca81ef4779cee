import { execFileSync } from 'node:child_process';
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

// Every npm script runs on the Node.js of the `node` development dependency: npm puts
// node_modules/.bin first on PATH. .nvmrc and the Docker image name the same release.
describe('pinned Node.js runtime', () => {
  const pinned = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> })
    .devDependencies.node;

  it('is an exact version that the declared engine range admits', () => {
    expect(pinned).toMatch(/^\d+\.\d+\.\d+$/);
    expect(semver.satisfies(pinned ?? '', manifest.engines.node)).toBe(true);
  });

  it('is the version installed in node_modules/.bin', () => {
    const installed = execFileSync(path.join(ROOT, 'node_modules/.bin/node'), ['--version'], { encoding: 'utf8' }).trim();
    expect(installed).toBe(`v${pinned}`);
  });

  it('is the version of .nvmrc and of every Docker base image', () => {
    expect(readFileSync(path.join(ROOT, '.nvmrc'), 'utf8').trim()).toBe(pinned);
    const images = [...readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8').matchAll(/^FROM (\S+)/gm)].map((match) => match[1]);
    expect(images.length).toBeGreaterThan(0);
    for (const image of images) expect(image).toBe(`node:${pinned}-bookworm-slim`);
  });
});
