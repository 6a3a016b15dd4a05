/** @type {import('jest').Config} */
module.exports = {
  // Type checking is `npm run build`'s job; tests only transpile (tsconfig has isolatedModules).
  transform: { '^.+\\.ts$': ['ts-jest', { diagnostics: false }] },
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  testTimeout: 120000,
  // Lab-backed suites share one lab: run files one at a time (npm test passes --runInBand).
  globalSetup: '<rootDir>/test/global-setup.ts',
  globalTeardown: '<rootDir>/test/global-teardown.ts',
};
