/**
 * Fused attention on the native addon: softmax(q·kᵀ·scale + mask)·v in one call per layer instead of a product,
 * a scale, a mask, a softmax and a product per head as tfjs ops. Registered as a kernel on the wasm and cpu
 * backends, reading every tensor in place (on wasm, views of the heap) and writing into the output the backend
 * allocates. Keys and values may be the KV cache's blocks, read where they lie.
 *
 * The same float32 operations as the unfused path (src/layers/attention.ts) in another order of summation; keys a
 * row's mask removes (≤ −1e30) are skipped, exactly (they get probability 0 there too). Used for inference only:
 * while gradients are being recorded the op-by-op path runs, which has them. VIDEO_LLAVA_FUSED_ATTENTION=0 turns
 * it off.
 */
import * as tf from '@tensorflow/tfjs';
import type { KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs';
import { InputError } from '../errors';
import { platform } from '../platform';
import { NATIVE_BACKENDS, NativeBackendName, backendMemory } from './kernels';

export const FUSED_ATTENTION = 'VideoLlavaFusedAttention';
export const FUSED_ATTENTION_ENV = 'VIDEO_LLAVA_FUSED_ATTENTION';

interface Attrs {
  scale: number;
  blocks: number;
  hasMask: boolean;
  heads: number;
  /** Element strides of the mask over batch, head and query row (0 = broadcast). */
  maskStrides: [number, number, number];
}

function disabledByEnvironment(): boolean {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const raw = env?.[FUSED_ATTENTION_ENV]?.trim().toLowerCase();
  return raw === '0' || raw === 'false' || raw === 'off' || raw === 'no';
}

/** The mask's element strides over [batch, head, query row] for scores [B, H, Lq, Lk]; null where it cannot serve. */
function maskStrides(mask: tf.Tensor, B: number, H: number, Lq: number, Lk: number): [number, number, number] | null {
  if (mask.rank > 4 || mask.dtype !== 'float32') return null;
  const [mB, mH, mQ, mK] = [...new Array<number>(4 - mask.rank).fill(1), ...mask.shape];
  if (mK !== Lk || (mB !== 1 && mB !== B) || (mH !== 1 && mH !== H) || (mQ !== 1 && mQ !== Lq)) return null;
  return [mB === 1 ? 0 : mH * mQ * mK, mH === 1 ? 0 : mQ * mK, mQ === 1 ? 0 : mK];
}

/**
 * The attention output [B, H, Lq, D] computed on the addon, or null where the fused kernel does not serve (no
 * addon or AVX-512, another backend, gradients being recorded, head size not a multiple of 16 up to 128, a mask
 * that broadcasts along the keys): the caller then runs the tfjs ops.
 */
export function fusedAttention(q: tf.Tensor4D, keys: tf.Tensor4D[], values: tf.Tensor4D[], scale: number, mask: tf.Tensor | null): tf.Tensor4D | null {
  const addon = platform.nativeAddon();
  if (!addon || typeof addon.attention !== 'function' || disabledByEnvironment()) return null;
  const isa = addon.features().isa;
  if (isa !== 'avx512' && isa !== 'amx') return null;
  if (!(NATIVE_BACKENDS as readonly string[]).includes(tf.getBackend())) return null;
  if ((tf.engine().state as unknown as { gradientDepth: number }).gradientDepth > 0) return null;
  const [B, H, Lq, D] = q.shape;
  if (keys.length === 0 || keys.length !== values.length || D % 16 !== 0 || D > 128) return null;
  const Hkv = keys[0].shape[1];
  if (H % Hkv !== 0 || q.dtype !== 'float32') return null;
  let Lk = 0;
  for (let i = 0; i < keys.length; i++) {
    const [kb, kh, len, kd] = keys[i].shape;
    const vs = values[i].shape;
    if (kb !== B || kh !== Hkv || kd !== D || vs[0] !== B || vs[1] !== Hkv || vs[2] !== len || vs[3] !== D) return null;
    if (keys[i].dtype !== 'float32' || values[i].dtype !== 'float32') return null;
    Lk += len;
  }
  if (Lk === 0 || Lq === 0) return null;
  const strides = mask ? maskStrides(mask, B, H, Lq, Lk) : ([0, 0, 0] as [number, number, number]);
  if (!strides) return null;
  registerKernels();
  const inputs: Record<string, tf.Tensor> = { q };
  keys.forEach((k, i) => (inputs[`k${i}`] = k));
  values.forEach((v, i) => (inputs[`v${i}`] = v));
  if (mask) inputs.mask = mask;
  const attrs: Attrs = { scale, blocks: keys.length, hasMask: mask !== null, heads: Hkv, maskStrides: strides };
  return tf.engine().runKernel(FUSED_ATTENTION, inputs, attrs as unknown as NamedAttrMap) as tf.Tensor4D;
}

function kernelFor(backendName: NativeBackendName): KernelFunc {
  return ({ inputs, attrs, backend }) => {
    const a = attrs as unknown as Attrs;
    const q = inputs.q as TensorInfo;
    const [B, H, Lq, D] = q.shape;
    const memory = backendMemory(backendName, backend);
    const out = memory.output(q.shape);
    const tensors = [q, ...Array.from({ length: a.blocks }, (_, i) => [inputs[`k${i}`], inputs[`v${i}`]]).flat(), ...(a.hasMask ? [inputs.mask] : [])];
    if (!tensors.every((t) => memory.readable(t as TensorInfo))) throw new InputError('attention', `inputs not readable in place on ${backendName}`);
    // Views only after the output is allocated: allocation may grow (and move) the wasm heap.
    const view = (t: unknown) => memory.view(t as TensorInfo);
    const keys = Array.from({ length: a.blocks }, (_, i) => view(inputs[`k${i}`]));
    const values = Array.from({ length: a.blocks }, (_, i) => view(inputs[`v${i}`]));
    const [mb, mh, mq] = a.maskStrides;
    const addon = platform.nativeAddon()!;
    if (!addon.attention(view(q), keys, values, B, H, a.heads, Lq, D, a.scale, a.hasMask ? view(inputs.mask) : null, mb, mh, mq, view(out))) {
      throw new InputError('attention', `the fused kernel declined [${q.shape.join(', ')}] on ${backendName}`);
    }
    return out;
  };
}

let registered = false;

function registerKernels(): void {
  if (registered) return;
  for (const backendName of NATIVE_BACKENDS) {
    if (!tf.getKernel(FUSED_ATTENTION, backendName)) tf.registerKernel({ kernelName: FUSED_ATTENTION, backendName, kernelFunc: kernelFor(backendName) });
  }
  registered = true;
}
