/** Raw access to the bitsandbytes fixtures (test/fixtures/bnb, written by reference/gen_bnb.py). */
import * as path from 'path';
import { RawTensor } from '../../src/quantization';
import { SafetensorsFile } from '../../src/weights/safetensors';
import { FIXTURES } from '../helpers/fixtures';

export const BNB = path.join(FIXTURES, 'bnb');

export async function readRaw(file: SafetensorsFile, name: string): Promise<RawTensor> {
  const info = file.info(name);
  return { dtype: info.dtype, shape: [...info.shape], data: await file.readBytes(name) };
}

/** Every tensor of a file, raw. */
export async function readAllRaw(file: SafetensorsFile): Promise<Record<string, RawTensor>> {
  const out: Record<string, RawTensor> = {};
  for (const name of file.keys()) out[name] = await readRaw(file, name);
  return out;
}

/** The tensors under `<prefix>.`, renamed relative to it. */
export function under(tensors: Record<string, RawTensor>, prefix: string): Record<string, RawTensor> {
  const out: Record<string, RawTensor> = {};
  for (const [k, v] of Object.entries(tensors)) if (k.startsWith(`${prefix}.`)) out[k.slice(prefix.length + 1)] = v;
  return out;
}

export function bytesOf(a: ArrayBufferView): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

/** Index of the first element where a and b differ as float32 values (NaN never equal), or -1. */
export function firstDifference(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}
