/**
 * Backend selection, in one place: an explicit option wins, then the VIDEO_LLAVA_BACKEND environment
 * variable, then the default (`wasm`). In Node, `tensorflow` uses @tensorflow/tfjs-node (or -node-gpu) when the
 * user has installed it; it is an optional peer dependency and never required. In the browser the backends are
 * wasm, webgl, webgpu (where the browser has it) and cpu (src/platform/browser.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { installWasmSlices } from './native/wasm_slice';
import { installWasmSplitMatmul } from './native/wasm_split';
import { BackendError } from './errors';
import { platform } from './platform';

/** Set to 0 to keep tfjs-backend-wasm's own BatchMatMul for long inner dimensions (see src/native/wasm_split.ts). */
export const WASM_SPLIT_ENV = 'VIDEO_LLAVA_WASM_SPLIT';

export type BackendName = 'wasm' | 'cpu' | 'tensorflow' | 'webgl' | 'webgpu';
/** The backends of this platform (Node: wasm, cpu, tensorflow; browser: wasm, webgl, webgpu, cpu), default first. */
export const BACKENDS: readonly BackendName[] = platform.backends;
export const DEFAULT_BACKEND: BackendName = 'wasm';
export const BACKEND_ENV = 'VIDEO_LLAVA_BACKEND';

export function resolveBackendName(option?: string): BackendName {
  const raw = option ?? platform.env(BACKEND_ENV) ?? DEFAULT_BACKEND;
  const name = raw.trim().toLowerCase();
  if (!(BACKENDS as readonly string[]).includes(name)) {
    const from = option !== undefined ? 'option backend' : `environment variable ${BACKEND_ENV}`;
    throw new BackendError(`${from}: unknown backend "${raw}"; expected one of ${BACKENDS.join(', ')}`);
  }
  return name as BackendName;
}

/**
 * Selects and initialises the backend; returns the name tfjs reports. Safe to call repeatedly.
 * `native`: matMul on native sgemm (src/native) for wasm/cpu in Node; default VIDEO_LLAVA_NATIVE, else on
 * when the optional nblas package loads (nativeMatmulNotice() says when it does not).
 */
export async function setBackend(option?: string, { native }: { native?: boolean } = {}): Promise<BackendName> {
  const name = resolveBackendName(option);
  await platform.loadBackend(name);
  if (tf.getBackend() !== name) {
    const ok = await tf.setBackend(name);
    if (!ok) throw new BackendError(`backend "${name}" failed to initialise`);
  }
  await tf.ready();
  if (name === 'wasm') installWasmSlices();
  // Before the native kernels capture wasm's BatchMatMul as their fallback (src/native/wasm_split.ts).
  if (name === 'wasm' && platform.env(WASM_SPLIT_ENV) !== '0' && !platform.nativeKernelsActive('wasm')) installWasmSplitMatmul();
  platform.configureBackend(name, native);
  return name;
}
