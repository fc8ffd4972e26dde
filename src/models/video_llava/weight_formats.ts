/**
 * Which format each weight loads in (the `dtype` and `computeDtype` load options, like transformers'
 * `torch_dtype`), and reading a weight in that format without a float32 copy of it.
 *
 *   dtype 'auto' (default)   large weights (every Linear, the decoder's token embeddings) stay in the checkpoint's
 *                            16-bit dtype outside the tensor heap; float32 checkpoints load as float32 tensors
 *   dtype 'float32'          every weight a float32 tensor (trainable; the only way to fine-tune a base weight)
 *   dtype 'bfloat16'/'float16'  large weights converted to that dtype (nearest even), as torch's .to(dtype)
 *   computeDtype 'bfloat16'  products with large weights take bfloat16 inputs (float32 accumulation), as a Python
 *                            user gets with torch_dtype=torch.bfloat16; large weights are then kept in bfloat16
 *
 * Small tensors (norms, biases, class and position embeddings, the patch embedding) are always float32 tensors.
 */
import { InputError } from '../../errors';
import { Parameter } from '../../layers/module';
import type { ComputeDType } from '../../native/codes';
import { Checkpoint } from '../../weights/checkpoint';
import { DType, decodeFloat } from '../../weights/dtype';
import { HalfDType, HalfWeight } from '../../weights/stored';

export type LoadDType = 'auto' | 'float32' | HalfDType;
export const LOAD_DTYPES: readonly LoadDType[] = ['auto', 'float32', 'bfloat16', 'float16'];
export const COMPUTE_DTYPES: readonly ComputeDType[] = ['float32', 'bfloat16'];

export interface FormatOptions {
  dtype?: LoadDType;
  computeDtype?: ComputeDType;
}

export function checkFormatOptions({ dtype = 'auto', computeDtype = 'float32' }: FormatOptions): Required<FormatOptions> {
  if (!LOAD_DTYPES.includes(dtype)) throw new InputError('dtype', `expected one of ${LOAD_DTYPES.join(', ')}, found "${dtype}"`);
  if (!COMPUTE_DTYPES.includes(computeDtype)) {
    throw new InputError('computeDtype', `expected one of ${COMPUTE_DTYPES.join(', ')}, found "${computeDtype}"`);
  }
  if (computeDtype === 'bfloat16' && (dtype === 'float32' || dtype === 'float16')) {
    throw new InputError('computeDtype', `bfloat16 compute needs bfloat16 weights; it cannot be combined with dtype "${dtype}" (use "auto" or "bfloat16")`);
  }
  return { dtype, computeDtype };
}

/** The format a weight loads in: a half dtype kept outside the heap, or null for a float32 tensor. */
export function storedFormat(param: Parameter, stored: DType, options: Required<FormatOptions>): HalfDType | null {
  if (!param.packable || param.shape.length !== 2) return null;
  if (options.computeDtype === 'bfloat16') return 'bfloat16';
  if (options.dtype === 'float32') return null;
  if (options.dtype !== 'auto') return options.dtype;
  return stored === 'BF16' ? 'bfloat16' : stored === 'F16' ? 'float16' : null;
}

const SAME: Partial<Record<DType, HalfDType>> = { BF16: 'bfloat16', F16: 'float16' };
/** Rows converted at a time when the checkpoint's dtype differs from the target (bounds the transient float32). */
const CONVERT_ROWS_BYTES = 16 * 1024 * 1024;

/** One checkpoint tensor as a HalfWeight: its own bytes (mapped, no copy) when the dtype matches, else converted. */
export async function readHalfWeight(checkpoint: Checkpoint, key: string, target: HalfDType, computeDtype: ComputeDType): Promise<HalfWeight> {
  const info = checkpoint.info(key);
  const [rows, cols] = info.shape as [number, number];
  let weight: HalfWeight;
  if (SAME[info.dtype] === target) {
    const { bytes, backing } = await checkpoint.viewBytes(key);
    const aligned = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
    if (aligned !== bytes) backing?.drop();
    const data = new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2);
    weight = new HalfWeight(target, [rows, cols], data, aligned === bytes ? backing : null);
  } else {
    weight = halfWeightFromBytes(await checkpoint.readBytes(key), info.dtype, [rows, cols], target, { file: checkpoint.fileOf(key).path, tensor: key });
  }
  weight.compute = computeDtype;
  return weight;
}

/**
 * A HalfWeight from a tensor's bytes in memory (formats that cannot be mapped, such as PyTorch .bin archives): the
 * bytes themselves when the dtype is the target's, else converted by blocks of rows (no float32 copy of the whole).
 */
export function halfWeightFromBytes(bytes: Uint8Array, dtype: DType, [rows, cols]: [number, number], target: HalfDType, ref: { file: string; tensor: string }): HalfWeight {
  if (SAME[dtype] === target) {
    const aligned = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
    return new HalfWeight(target, [rows, cols], new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2));
  }
  const size = bytes.byteLength / (rows * cols || 1);
  const out = new Uint16Array(rows * cols);
  const step = Math.max(1, Math.floor(CONVERT_ROWS_BYTES / (4 * cols)));
  for (let r0 = 0; r0 < rows; r0 += step) {
    const r1 = Math.min(rows, r0 + step);
    const values = decodeFloat(dtype, bytes.subarray(r0 * cols * size, r1 * cols * size), ref);
    out.set(HalfWeight.fromFloat32(values, [r1 - r0, cols], target).data, r0 * cols);
  }
  return new HalfWeight(target, [rows, cols], out);
}
