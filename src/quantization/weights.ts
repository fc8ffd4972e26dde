/**
 * bitsandbytes-quantized weights behind a Parameter (src/weights/stored.ts): the format's state is the data (as
 * bitsandbytes' QuantState is), the products run on the addon's fused dequantize-and-multiply kernels, and saving
 * writes the tensors transformers + bitsandbytes write.
 *
 *   FourBitWeight  NF4 / FP4: value = round_to(dtype, code[q] · scale[block]) over the flattened weight
 *   Int8Weight     LLM.int8 weight: value = (q · SCB[row]) · (1/127); the product is the dequantize-then-float32
 *                  one (bitsandbytes' own CPU path quantizes the activations too: its drift is measured, not matched)
 */
import { QuantizationError } from '../errors';
import type { NativeAddon } from '../native/addon';
import { FORMAT_CODES } from '../native/codes';
import { StoredTensor, StoredWeight } from '../weights/stored';
import { QuantStorage, fourBitToTensors, int8ToTensors } from './bnb_tensors';
import { fourBitCode } from './codes';
import { FourBitState, blockScales, checkFourBitState, dequantize4bitRows } from './fourbit';
import { Int8State, checkInt8State, dequantizeInt8Rows } from './int8';

const ROUND_CODES = { float32: FORMAT_CODES.float32, bfloat16: FORMAT_CODES.bfloat16, float16: FORMAT_CODES.float16 } as const;
const NO_CODE = new Float32Array(16);

function asStored(tensors: Record<string, { dtype: StoredTensor['dtype']; shape: number[]; data: Uint8Array }>): StoredTensor[] {
  return Object.entries(tensors).map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape, data: t.data }));
}

export class FourBitWeight extends StoredWeight {
  readonly format: 'nf4' | 'fp4';
  /** One float32 scale per block, double quantization undone once (what the kernels read). */
  readonly scales: Float32Array;
  private readonly code: Float32Array;

  constructor(
    readonly state: FourBitState,
    /** How the packed bytes are saved (`bnb_4bit_quant_storage`). */
    readonly storage: QuantStorage = 'uint8',
    name = '<weight>',
  ) {
    if (state.shape.length !== 2) throw new QuantizationError(name, `a 4-bit Linear weight is 2-D, found shape [${state.shape.join(', ')}]`);
    super([state.shape[0], state.shape[1]]);
    checkFourBitState(state, name);
    this.format = state.quantType;
    this.scales = blockScales(state);
    this.code = fourBitCode(state.quantType);
  }

  get byteLength(): number {
    const { packed, absmax, nested } = this.state;
    const kept = packed.byteLength + absmax.byteLength + (nested ? nested.absmax.byteLength + this.scales.byteLength : 0);
    return kept;
  }

  widenRows(r0: number, r1: number): Float32Array {
    return dequantize4bitRows(this.state, r0, r1, this.scales);
  }

  nativeProduct(addon: NativeAddon, a: Float32Array, m: number, c: Float32Array, transposed: boolean): boolean {
    const { rows, cols } = this;
    const round = ROUND_CODES[this.state.dtype];
    const compute = this.compute === 'bfloat16' ? 1 : 0;
    const [N, K] = transposed ? [cols, rows] : [rows, cols];
    addon.gemmQuant(m, N, K, a, K, false, FORMAT_CODES.q4, this.state.packed, cols, !transposed, this.scales, this.code, this.state.blockSize, round, c, N, 0, compute);
    return true;
  }

  storedTensors(): StoredTensor[] {
    return asStored(fourBitToTensors(this.state, this.storage));
  }

  protected release(): void {
    // plain JS memory: nothing to unmap
  }
}

export class Int8Weight extends StoredWeight {
  readonly format = 'int8' as const;

  constructor(
    readonly state: Int8State,
    name = '<weight>',
  ) {
    super(state.shape);
    checkInt8State(state, name);
  }

  get byteLength(): number {
    return this.state.weight.byteLength + this.state.scb.byteLength;
  }

  widenRows(r0: number, r1: number): Float32Array {
    return dequantizeInt8Rows(this.state, r0, r1);
  }

  nativeProduct(addon: NativeAddon, a: Float32Array, m: number, c: Float32Array, transposed: boolean): boolean {
    const { rows, cols } = this;
    const compute = this.compute === 'bfloat16' ? 1 : 0;
    const [N, K] = transposed ? [cols, rows] : [rows, cols];
    addon.gemmQuant(m, N, K, a, K, false, FORMAT_CODES.int8, this.state.weight, cols, !transposed, this.state.scb, NO_CODE, 0, FORMAT_CODES.float32, c, N, 0, compute);
    return true;
  }

  storedTensors(): StoredTensor[] {
    return asStored(int8ToTensors(this.state));
  }

  protected release(): void {
    // plain JS memory
  }
}
