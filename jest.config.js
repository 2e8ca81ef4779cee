/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json' }],
  },
  setupFiles: ['reflect-metadata'],
  globalSetup: '<rootDir>/test/support/global-setup.mjs',
  globalTeardown: '<rootDir>/test/support/global-teardown.mjs',
  maxWorkers: 2,
  // A worker that has run some forty files (their ORMs, servers and browsers) takes longer than
  // Jest's default 500 ms to wind down after a full run; one that truly hangs is still
  // force-exited, with Jest's warning, after this.
  workerGracefulExitTimeout: 5_000,
  testTimeout: 60_000,
};
