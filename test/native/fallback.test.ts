// The optional side of native matMul: a library that cannot load leaves the stock kernels in place and
// says why; the environment switches; the OpenBLAS thread count.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import * as ts from 'typescript';
import { setBackend } from '../../src/backend';
import { InputError } from '../../src/errors';
import {
  NATIVE_ENV,
  THREADS_ENV,
  disableNativeMatmul,
  enableNativeMatmul,
  nativeMatmulNotice,
  nativeMatmulStatus,
  nativeMatmulWanted,
} from '../../src/native';
import { loadBlas, resolveBlasThreads } from '../../src/native/blas';

const available = loadBlas().ok;
let scratch: string;

beforeAll(async () => {
  await setBackend(undefined, { native: false });
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'native-fallback-'));
});

afterAll(() => {
  disableNativeMatmul();
  fs.rmSync(scratch, { recursive: true, force: true });
});

/** The registered BatchMatMul of the current backend (of cpu under tensorflow, which native never replaces). */
const registered = () => tf.getKernel('BatchMatMul', ['wasm', 'cpu'].includes(tf.getBackend()) ? tf.getBackend() : 'cpu').kernelFunc;

describe('a library that cannot be used', () => {
  function expectStockKernels(reason: RegExp): void {
    const status = nativeMatmulStatus();
    expect(status.enabled).toBe(false);
    expect(status.path).toBe(tf.getBackend());
    expect(status.library).toBeNull();
    expect(status.reason).toMatch(reason);
    expect(status.reason).toMatch(/^native matmul off: .*; using the stock kernels$/);
    expect(nativeMatmulNotice()).toBe(status.reason);
    const y = tf.matMul(tf.ones([2, 3]), tf.ones([3, 2]));
    expect(Array.from(y.dataSync())).toEqual([3, 3, 3, 3]); // sums of three ones
    y.dispose();
  }

  test('a missing module: the stock kernels stay and the reason names it', () => {
    disableNativeMatmul();
    const stock = registered();
    enableNativeMatmul({ library: path.join(scratch, 'no-such-nblas') });
    expectStockKernels(/cannot load .*no-such-nblas: .*Cannot find module/);
    expect(registered()).toBe(stock);
  });

  test('a failed enable after a successful one puts the stock kernels back', () => {
    disableNativeMatmul();
    const stock = registered();
    if (available) {
      enableNativeMatmul();
      expect(registered()).not.toBe(stock);
    }
    enableNativeMatmul({ library: path.join(scratch, 'still-missing') });
    expect(registered()).toBe(stock);
    expectStockKernels(/cannot load/);
  });

  test('a module without sgemm', () => {
    enableNativeMatmul({ library: 'path' });
    expectStockKernels(/path has no sgemm function/);
  });

  test('an sgemm that computes the wrong thing fails the self-check', () => {
    const fake = path.join(scratch, 'fake-blas.js');
    fs.writeFileSync(fake, 'module.exports = { sgemm() {} };\n'); // leaves C untouched
    enableNativeMatmul({ library: fake });
    expectStockKernels(/self-check gave \[0,0,0,0\], expected \[19,22,43,50\]/);
  });
});

describe('switches', () => {
  const saved = process.env[NATIVE_ENV];
  afterEach(() => {
    if (saved === undefined) delete process.env[NATIVE_ENV];
    else process.env[NATIVE_ENV] = saved;
  });

  test.each([
    [undefined, true],
    ['', true],
    ['1', true],
    ['on', true],
    ['TRUE', true],
    ['0', false],
    ['off', false],
    ['false', false],
    ['no', false],
  ])('%s=%j → wanted %s', (value, wanted) => {
    if (value === undefined) delete process.env[NATIVE_ENV];
    else process.env[NATIVE_ENV] = value;
    expect(nativeMatmulWanted()).toBe(wanted);
  });

  test('the option wins over the environment', () => {
    process.env[NATIVE_ENV] = '0';
    expect(nativeMatmulWanted(true)).toBe(true);
    process.env[NATIVE_ENV] = '1';
    expect(nativeMatmulWanted(false)).toBe(false);
  });

  test('a value that is not a switch is an InputError naming the variable', () => {
    process.env[NATIVE_ENV] = 'fast';
    expect(() => nativeMatmulWanted()).toThrow(InputError);
    expect(() => nativeMatmulWanted()).toThrow('VIDEO_LLAVA_NATIVE: expected 0 or 1 (or false/true, off/on), found "fast"');
  });

  test('VIDEO_LLAVA_NATIVE=0 makes setBackend restore the stock kernels and say so', async () => {
    process.env[NATIVE_ENV] = '0';
    await setBackend();
    expect(nativeMatmulStatus()).toMatchObject({ enabled: false, path: tf.getBackend(), reason: 'native matmul off: VIDEO_LLAVA_NATIVE=0' });
    expect(nativeMatmulNotice()).toBeNull(); // off on purpose: nothing for the CLI to print
  });

  test('bad thread counts and minMacs are InputErrors', () => {
    const savedThreads = process.env[THREADS_ENV];
    try {
      process.env[THREADS_ENV] = 'many';
      expect(() => resolveBlasThreads()).toThrow('VIDEO_LLAVA_BLAS_THREADS: expected a positive integer number of BLAS threads, found "many"');
      process.env[THREADS_ENV] = '0';
      expect(() => resolveBlasThreads()).toThrow(InputError);
      expect(resolveBlasThreads(3)).toBe(3); // the option wins
      delete process.env[THREADS_ENV];
      expect(resolveBlasThreads()).toBeUndefined();
    } finally {
      if (savedThreads === undefined) delete process.env[THREADS_ENV];
      else process.env[THREADS_ENV] = savedThreads;
    }
    expect(() => enableNativeMatmul({ threads: 1.5 })).toThrow('threads: expected a positive integer');
    expect(() => enableNativeMatmul({ minMacs: -1 })).toThrow('minMacs: expected a non-negative number');
  });
});

// Only where nblas is installed (test/native/kernels.test.ts covers the case where it is not).
if (available) {
describe('OpenBLAS threads', () => {
  /** src/native/blas.ts and its imports, transpiled, so a fresh process can load them. */
  function transpiled(): string {
    const out = path.join(scratch, 'js');
    for (const [from, to] of [
      ['src/native/blas.ts', 'native/blas.js'],
      ['src/errors.ts', 'errors.js'],
      ['src/native/addon.ts', 'native/addon.js'],
      ['src/native/codes.ts', 'native/codes.js'],
    ]) {
      const source = fs.readFileSync(path.join(__dirname, '../..', from), 'utf8');
      const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } }).outputText;
      fs.mkdirSync(path.dirname(path.join(out, to)), { recursive: true });
      fs.writeFileSync(path.join(out, to), js);
    }
    return path.join(out, 'native/blas.js');
  }

  test.each([1, 2])('VIDEO_LLAVA_BLAS_THREADS=%i before the first load gives that many OpenBLAS threads', (threads) => {
    const blas = transpiled();
    const nblas = path.dirname(require.resolve('nblas/package.json'));
    const script = `const b = require(${JSON.stringify(blas)}); const r = b.loadBlas(${JSON.stringify(nblas)}, b.resolveBlasThreads()); console.log(JSON.stringify(r.ok ? r.blas : r));`;
    const child = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, [THREADS_ENV]: String(threads) }, encoding: 'utf8', timeout: 60000 });
    expect(child.status).toBe(0);
    const loaded = JSON.parse(child.stdout) as { threads: number; library: string };
    // Counted from the threads the library started, capped by the cores OpenBLAS sees.
    expect(loaded.threads).toBe(Math.min(threads, os.availableParallelism()));
    expect(loaded.library).toMatch(/^nblas \d+\.\d+\.\d+/);
  });

  test('a different thread count after loading is reported, not silently ignored', () => {
    const loaded = enableNativeMatmul({ library: 'nblas' });
    const asked = (loaded.threads as number) + 1;
    const status = enableNativeMatmul({ threads: asked, library: 'nblas' });
    expect(status.enabled).toBe(true);
    expect(status.threads).toBe(loaded.threads);
    expect(status.reason).toContain(`${asked} threads asked for, but OpenBLAS was loaded earlier with ${loaded.threads}`);
  });
});
}
