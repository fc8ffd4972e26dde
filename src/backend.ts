/**
 * Backend selection, in one place: an explicit option wins, then the VIDEO_LLAVA_BACKEND environment
 * variable, then the default (`wasm`). `tensorflow` uses @tensorflow/tfjs-node (or -node-gpu) when the
 * user has installed it; it is an optional peer dependency and never required.
 */
import * as tf from '@tensorflow/tfjs';
import { installWasmSplitMatmul } from './native/wasm_split';
import { BackendError } from './errors';
import { configureNativeMatmul } from './native';
import { nativeKernelsActive } from './native/kernels';

/** Set to 0 to keep tfjs-backend-wasm's own BatchMatMul for long inner dimensions (see src/native/wasm_split.ts). */
export const WASM_SPLIT_ENV = 'VIDEO_LLAVA_WASM_SPLIT';

export type BackendName = 'wasm' | 'cpu' | 'tensorflow';
export const BACKENDS: readonly BackendName[] = ['wasm', 'cpu', 'tensorflow'];
export const DEFAULT_BACKEND: BackendName = 'wasm';
export const BACKEND_ENV = 'VIDEO_LLAVA_BACKEND';

export function resolveBackendName(option?: string): BackendName {
  const raw = option ?? process.env[BACKEND_ENV] ?? DEFAULT_BACKEND;
  const name = raw.trim().toLowerCase();
  if (!(BACKENDS as readonly string[]).includes(name)) {
    const from = option !== undefined ? 'option backend' : `environment variable ${BACKEND_ENV}`;
    throw new BackendError(`${from}: unknown backend "${raw}"; expected one of ${BACKENDS.join(', ')}`);
  }
  return name as BackendName;
}

function loadNodeBinding(): void {
  for (const pkg of ['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu']) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      require(pkg);
      return;
    } catch {
      // try the next one
    }
  }
  throw new BackendError(
    'backend "tensorflow" needs @tensorflow/tfjs-node or @tensorflow/tfjs-node-gpu installed; ' +
      'use --backend wasm (default) or cpu otherwise',
  );
}

/**
 * Selects and initialises the backend; returns the name tfjs reports. Safe to call repeatedly.
 * `native`: matMul on native sgemm (src/native) for wasm/cpu; default VIDEO_LLAVA_NATIVE, else on
 * when the optional nblas package loads (nativeMatmulNotice() says when it does not).
 */
export async function setBackend(option?: string, { native }: { native?: boolean } = {}): Promise<BackendName> {
  const name = resolveBackendName(option);
  if (name === 'wasm') {
    // Registers the backend with tfjs; its .wasm binaries ship inside the package.
    require('@tensorflow/tfjs-backend-wasm');
  } else if (name === 'tensorflow') {
    loadNodeBinding();
  }
  if (tf.getBackend() !== name) {
    const ok = await tf.setBackend(name);
    if (!ok) throw new BackendError(`backend "${name}" failed to initialise`);
  }
  await tf.ready();
  // Before the native kernels capture wasm's BatchMatMul as their fallback (src/native/wasm_split.ts).
  if (name === 'wasm' && process.env[WASM_SPLIT_ENV] !== '0' && !nativeKernelsActive('wasm')) installWasmSplitMatmul();
  configureNativeMatmul(native);
  return name;
}
