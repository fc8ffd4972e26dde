/** Tests run on the backend named by VIDEO_LLAVA_BACKEND (default: wasm), set up in test/setup.ts. */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // test/browser runs in Chromium: npm run test:browser (jest.browser.config.js)
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/browser/'],
  transform: { '^.+\\.ts$': ['ts-jest', { diagnostics: false }] },
  setupFilesAfterEnv: ['<rootDir>/test/setup.ts'],
  testTimeout: 120000,
  maxWorkers: 2,
};
