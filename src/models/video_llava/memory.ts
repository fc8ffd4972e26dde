/**
 * Memory that will not fit is refused up front, with the numbers: before loading (the weights) and before a
 * generation (the KV cache), on every backend. The wasm backend keeps every tensor in one WebAssembly memory of
 * at most 4 GiB and tfjs-backend-wasm does not report a failed allocation (the tensor silently lands over other
 * data: benchmarks/RESULTS.md), so there the heap is the limit; elsewhere it is the memory the OS can give.
 */
import * as tf from '@tensorflow/tfjs';
import { WeightsError } from '../../errors';
import { platform } from '../../platform';
import type { Module } from '../../layers/module';

/** The wasm heap tfjs-backend-wasm can address. */
export const WASM_HEAP_BYTES = 4 * 1024 ** 3;
/** Float32 weights allowed in the wasm heap: the rest is for activations, the KV cache and XNNPACK's packing. */
export const WASM_WEIGHT_LIMIT_BYTES = 3.5 * 1024 ** 3;
/** Kept free on top of the weights for activations, the runtime and the OS. */
export const MEMORY_MARGIN_BYTES = 1024 ** 3;

export const gib = (bytes: number): string => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
/** GiB from 1 GiB up, else MiB: for summaries of models of any size. */
export const formatBytes = (bytes: number): string => (bytes >= 1024 ** 3 ? gib(bytes) : `${(bytes / 1024 ** 2).toFixed(1)} MiB`);

/** Memory the platform can give now: MemAvailable on Linux (free + reclaimable cache), else os.freemem(); the browser's guess. */
export function availableMemory(): number {
  return platform.availableMemory();
}

export interface WeightMemory {
  /** float32 tensors in the backend's memory */
  heapBytes: number;
  /** weights kept in their stored format outside the heap (mapped or read) */
  storedBytes: number;
}

/** Throws a WeightsError with the numbers when the weights cannot fit. */
export function checkWeightsFit(need: WeightMemory, where: string, available = availableMemory(), backend = tf.getBackend()): void {
  const advice =
    need.heapBytes > need.storedBytes ? "; load with dtype 'auto' (16-bit checkpoints stay 16-bit) or 'bfloat16' (--dtype) to keep large weights at 2 bytes" : '';
  if (backend === 'wasm' && need.heapBytes > WASM_WEIGHT_LIMIT_BYTES) {
    throw new WeightsError(
      `${where}: the model needs ${gib(need.heapBytes)} of float32 weights in the wasm backend's memory, which is capped at 4 GiB ` +
        `(${gib(WASM_WEIGHT_LIMIT_BYTES)} for weights)${advice || '; use --backend cpu (or tensorflow with @tensorflow/tfjs-node)'}`,
    );
  }
  const total = need.heapBytes + need.storedBytes + MEMORY_MARGIN_BYTES;
  if (total > available) {
    const parts = [`${gib(need.heapBytes)} of float32 tensors`];
    if (need.storedBytes > 0) parts.push(`${gib(need.storedBytes)} of weights kept as stored`);
    throw new WeightsError(
      `${where}: the model needs ${parts.join(' + ')} + ${gib(MEMORY_MARGIN_BYTES)} of working room = ${gib(total)} on the ${backend} backend, ` +
        `but this machine has ${gib(available)} available${advice}`,
    );
  }
}

/** Bytes in use in the wasm heap (its current size), or null on other backends. */
export function wasmHeapUsed(): number | null {
  if (tf.getBackend() !== 'wasm') return null;
  return tf.memory().numBytes;
}

/**
 * Throws a WeightsError when `bytes` more (a KV cache, a prompt's activations) cannot fit: in the wasm heap next to
 * what it already holds, else in the machine's available memory.
 */
export function checkWorkingMemory(bytes: number, what: string, available = availableMemory(), used = wasmHeapUsed()): void {
  if (used !== null) {
    const room = WASM_HEAP_BYTES - used - 256 * 1024 ** 2;
    if (bytes > room) {
      throw new WeightsError(
        `${what} needs ${gib(bytes)} but the wasm backend's 4 GiB memory has ${gib(Math.max(0, room))} left next to ${gib(used)} in use; ` +
          'use a shorter prompt or fewer new tokens, or --backend cpu / tensorflow',
      );
    }
    return;
  }
  if (bytes + 256 * 1024 ** 2 > available) {
    throw new WeightsError(`${what} needs ${gib(bytes)} but this machine has ${gib(available)} available; use a shorter prompt or fewer new tokens`);
  }
}

/** What a loaded model holds, by where and in which format (a tied head's shared table counted once). */
export function weightMemoryOf(model: Module): WeightMemory & { storedByFormat: Record<string, number>; countByFormat: Record<string, number> } {
  const out = { heapBytes: 0, storedBytes: 0, storedByFormat: {} as Record<string, number>, countByFormat: {} as Record<string, number> };
  const seen = new Set<object>();
  for (const [, p] of model.namedParameters()) {
    if (!p.loaded) continue;
    const w = p.stored;
    if (!w) {
      out.heapBytes += p.size * 4;
    } else if (!seen.has(w)) {
      seen.add(w);
      out.storedBytes += w.byteLength;
      out.storedByFormat[w.format] = (out.storedByFormat[w.format] ?? 0) + w.byteLength;
      out.countByFormat[w.format] = (out.countByFormat[w.format] ?? 0) + 1;
    }
  }
  return out;
}

/** Float32 activations one prompt position keeps alive at once in a decoder layer (MLP: gate, up, product, out;
 * attention: q, k, v, output, residuals, norms): (4·intermediate + 14·hidden)·4 bytes, which gives the 865 MiB
 * measured for a 2074-token prompt at 7B widths (benchmarks/RESULTS.md). */
export function activationBytesPerPosition(hidden: number, intermediate: number): number {
  return (4 * intermediate + 14 * hidden) * 4;
}

export interface PromptMemoryPlan {
  /** KV cache for the whole run, float32 */
  kvBytes: number;
  /** decoder activations of the prompt (one chunk of it when chunked) */
  activationBytes: number;
  /** positions per prefill chunk: the caller's, else chosen here (undefined = the whole prompt at once) */
  prefillChunkSize?: number;
}

/**
 * A generation's memory, checked before the first forward: the KV cache of `positions` positions for `rows` rows
 * must fit, and the prompt's activations too, in chunks when the whole prompt would take more than 80 % of the
 * room the cache leaves (the chunk size chosen in multiples of 64). Throws a WeightsError with the numbers otherwise.
 */
export function planPromptMemory(
  text: { num_hidden_layers: number; num_key_value_heads: number; head_dim: number; hidden_size: number; intermediate_size: number },
  rows: number,
  promptLength: number,
  positions: number,
  prefillChunkSize: number | undefined,
  /** For tests: the machine's available memory, and the wasm heap in use (null: not on wasm). */
  env: { available?: number; heapUsed?: number | null } = {},
): PromptMemoryPlan {
  const available = env.available ?? availableMemory();
  const kvBytes = rows * positions * text.num_hidden_layers * 2 * text.num_key_value_heads * text.head_dim * 4;
  const perPosition = rows * activationBytesPerPosition(text.hidden_size, text.intermediate_size);
  const used = env.heapUsed !== undefined ? env.heapUsed : wasmHeapUsed();
  const room = used !== null ? WASM_HEAP_BYTES - used - 256 * 1024 ** 2 : available - 256 * 1024 ** 2;
  let chunk = prefillChunkSize;
  if (chunk === undefined && promptLength * perPosition > 0.8 * (room - kvBytes)) {
    const fits = Math.floor((0.8 * (room - kvBytes)) / perPosition / 64) * 64;
    chunk = Math.max(64, fits);
    if (chunk >= promptLength) chunk = undefined;
  }
  const activationBytes = Math.min(promptLength, chunk ?? promptLength) * perPosition;
  checkWorkingMemory(kvBytes + activationBytes, `generation (KV cache ${gib(kvBytes)} for ${positions} positions × ${rows} rows + prompt activations ${gib(activationBytes)})`, available, used);
  return { kvBytes, activationBytes, prefillChunkSize: chunk };
}
