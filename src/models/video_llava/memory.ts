/**
 * Memory that will not fit is refused up front, with the numbers: before loading (the weights) and before a
 * generation (the KV cache), on every backend. The wasm backend keeps every tensor in one WebAssembly memory of
 * at most 4 GiB and tfjs-backend-wasm does not report a failed allocation (the tensor silently lands over other
 * data: benchmarks/RESULTS.md), so there the heap is the limit; elsewhere it is the memory the OS can give.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as tf from '@tensorflow/tfjs';
import { WeightsError } from '../../errors';
import type { Module } from '../../layers/module';

/** The wasm heap tfjs-backend-wasm can address. */
export const WASM_HEAP_BYTES = 4 * 1024 ** 3;
/** Float32 weights allowed in the wasm heap: the rest is for activations, the KV cache and XNNPACK's packing. */
export const WASM_WEIGHT_LIMIT_BYTES = 3.5 * 1024 ** 3;
/** Kept free on top of the weights for activations, the runtime and the OS. */
export const MEMORY_MARGIN_BYTES = 1024 ** 3;

export const gib = (bytes: number): string => `${(bytes / 1024 ** 3).toFixed(1)} GiB`;

/** Memory the OS can give this process now: MemAvailable on Linux (free + reclaimable cache), else os.freemem(). */
export function availableMemory(): number {
  try {
    const match = /^MemAvailable:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
    if (match) return Number(match[1]) * 1024;
  } catch {
    // not Linux
  }
  return os.freemem();
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
export function checkWorkingMemory(bytes: number, what: string, available = availableMemory()): void {
  const used = wasmHeapUsed();
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
export function weightMemoryOf(model: Module): WeightMemory & { storedByFormat: Record<string, number> } {
  const out = { heapBytes: 0, storedBytes: 0, storedByFormat: {} as Record<string, number> };
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
    }
  }
  return out;
}
