/**
 * Weights kept in the format the checkpoint stores them, outside the tensor heap: a bfloat16 or float16
 * matrix stays 2 bytes an element (memory-mapped from the safetensors file where the addon is built, else read
 * once into a JS buffer). Products read it through src/native/stored_matmul.ts; nothing ever holds a float32
 * copy of the whole matrix. A StoredWeight sits behind a Parameter (src/layers/module.ts), so layers and the
 * rest of the module tree do not need to know the format.
 *
 * Ownership: a weight may be shared (a tied lm_head borrows embed_tokens), so it is reference-counted; the
 * memory it views (a file mapping) is released when the last weight on it is disposed.
 */
import { WeightsError } from '../errors';
import type { NativeAddon } from '../native/addon';
import { ComputeDType, FORMAT_CODES } from '../native/codes';
import { platform } from '../platform';
import { DType, decodeBFloat16, decodeFloat16, encodeBFloat16, encodeFloat16 } from './dtype';

export type HalfDType = 'bfloat16' | 'float16';
export const SAFETENSORS_HALF: Record<HalfDType, DType> = { bfloat16: 'BF16', float16: 'F16' };

/** Memory several weights view (a mapped file, or one read buffer); freed when the last holder releases it. */
export class Backing {
  private holders = 1;

  constructor(private readonly release: (() => void) | null = null) {}

  retain(): this {
    if (this.holders <= 0) throw new WeightsError('weight memory used after it was released');
    this.holders++;
    return this;
  }

  drop(): void {
    if (--this.holders === 0) this.release?.();
  }
}

/** A tensor as the checkpoint stores it, for saving. */
export interface StoredTensor {
  /** Relative to the weight's module: 'weight' itself; bitsandbytes formats add 'weight.absmax', 'SCB' and others. */
  name: string;
  dtype: DType;
  shape: number[];
  data: ArrayBufferView;
}

/** A [rows, cols] weight matrix kept in its stored format. */
export abstract class StoredWeight {
  /** 'bfloat16' | 'float16' here; 'nf4' | 'fp4' | 'int8' in src/quantization/weights.ts. */
  abstract readonly format: string;
  abstract readonly byteLength: number;
  /** Products with this weight: exact float32 (default) or bfloat16 inputs with float32 accumulation. */
  compute: ComputeDType = 'float32';
  private refs = 1;

  constructor(readonly shape: readonly [number, number]) {}

  get rows(): number {
    return this.shape[0];
  }

  get cols(): number {
    return this.shape[1];
  }

  /** Rows [r0, r1) as float32 ((r1 − r0)·cols values). */
  abstract widenRows(r0: number, r1: number): Float32Array;

  /**
   * c = a·Wᵀ ([m, cols] → [m, rows]), or with `transposed` a·W ([m, rows] → [m, cols]), on the addon; false where
   * the addon has no kernel for this format (the caller then widens blocks).
   */
  abstract nativeProduct(addon: NativeAddon, a: Float32Array, m: number, c: Float32Array, transposed: boolean): boolean;

  /** The tensors savePretrained writes for this weight, in the checkpoint's own format. */
  abstract storedTensors(): StoredTensor[];

  protected abstract release(): void;

  retain(): this {
    if (this.refs <= 0) throw new WeightsError('stored weight used after it was disposed');
    this.refs++;
    return this;
  }

  get disposed(): boolean {
    return this.refs <= 0;
  }

  dispose(): void {
    if (this.refs <= 0) return;
    if (--this.refs === 0) this.release();
  }
}

/** bfloat16 or float16, row-major [rows, cols], exactly the checkpoint's bytes. */
export class HalfWeight extends StoredWeight {
  constructor(
    readonly format: HalfDType,
    shape: readonly [number, number],
    /** rows·cols values; a view of a mapped file or of a buffer owned by `backing`. */
    readonly data: Uint16Array,
    private readonly backing: Backing | null = null,
  ) {
    super(shape);
    if (data.length !== shape[0] * shape[1]) {
      throw new WeightsError(`a [${shape.join(', ')}] ${format} weight needs ${shape[0] * shape[1]} values, found ${data.length}`);
    }
  }

  /** Rounds float32 values to the format (nearest even, as torch's .to(dtype)); the result owns its memory. */
  static fromFloat32(values: Float32Array, shape: readonly [number, number], format: HalfDType): HalfWeight {
    return new HalfWeight(format, shape, format === 'bfloat16' ? encodeBFloat16(values) : encodeFloat16(values));
  }

  get byteLength(): number {
    return this.data.byteLength;
  }

  widenRows(r0: number, r1: number): Float32Array {
    if (!(0 <= r0 && r0 <= r1 && r1 <= this.rows)) throw new WeightsError(`rows [${r0}, ${r1}) are outside [0, ${this.rows})`);
    const out = new Float32Array((r1 - r0) * this.cols);
    const addon = platform.nativeAddon();
    if (addon) {
      addon.widenRows(FORMAT_CODES[this.format], this.data, this.cols, r0, r1, out);
      return out;
    }
    const part = this.data.subarray(r0 * this.cols, r1 * this.cols);
    const bytes = new Uint8Array(part.buffer, part.byteOffset, part.byteLength);
    out.set(this.format === 'bfloat16' ? decodeBFloat16(bytes) : decodeFloat16(bytes));
    return out;
  }

  nativeProduct(addon: NativeAddon, a: Float32Array, m: number, c: Float32Array, transposed: boolean): boolean {
    const { rows, cols } = this;
    const format = FORMAT_CODES[this.format];
    const compute = this.compute === 'bfloat16' ? 1 : 0;
    if (transposed) addon.gemm(m, cols, rows, a, rows, false, format, this.data, cols, false, c, cols, 0, compute);
    else addon.gemm(m, rows, cols, a, cols, false, format, this.data, cols, true, c, rows, 0, compute);
    return true;
  }

  storedTensors(): StoredTensor[] {
    return [{ name: 'weight', dtype: SAFETENSORS_HALF[this.format], shape: [...this.shape], data: this.data }];
  }

  protected release(): void {
    this.backing?.drop();
  }
}
