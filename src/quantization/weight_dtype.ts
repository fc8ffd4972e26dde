/**
 * The floating dtypes a weight can have before quantization (torch names, as bitsandbytes writes them in a
 * quant state), and the float32 helpers that go with them: quantizers take the weight widened to float32,
 * dequantizers round their float32 products back to the weight's dtype (nearest, ties to even).
 */
import { QuantizationError } from '../errors';
import { FORMAT_CODES } from '../native/codes';
import { platform } from '../platform';
import { decodeBFloat16, decodeFloat16, encodeBFloat16, encodeFloat16 } from '../weights/dtype';

// Math functions bound once: in hot loops a global `Math.` lookup is slow in some hosts (jest's vm contexts: ~50x).
const { isFinite } = Number;

export type WeightDtype = 'float32' | 'bfloat16' | 'float16';

export const WEIGHT_DTYPES: readonly WeightDtype[] = ['float32', 'bfloat16', 'float16'];

/** Product of a shape; a QuantizationError naming `name` if an entry is not a non-negative integer. */
export function elementCount(shape: readonly number[], name: string): number {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new QuantizationError(name, `shape must be non-negative integers, found ${JSON.stringify(shape)}`);
  }
  return shape.reduce((a, b) => a * b, 1);
}

function bytesOf(bits: Uint16Array): Uint8Array {
  return new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
}

/** Each value rounded to the nearest `dtype` value (ties to even), widened back to float32. */
export function roundToDtype(values: Float32Array, dtype: WeightDtype): Float32Array {
  if (dtype === 'bfloat16') return decodeBFloat16(bytesOf(encodeBFloat16(values)));
  if (dtype === 'float16') return decodeFloat16(bytesOf(encodeFloat16(values)));
  return values;
}

/** Throws unless every value is finite and exactly representable in `dtype`. */
export function checkRepresentable(values: Float32Array, dtype: WeightDtype, name: string): void {
  if (dtype !== 'float16') {
    // float32 and bfloat16 by their bits: finite = exponent not all ones; bfloat16 = the low 16 bits zero
    const bad = (i: number): never => {
      const v = values[i];
      throw new QuantizationError(name, isFinite(v) ? `value ${v} at index ${i} is not a ${dtype} value (the weight's dtype)` : `value ${v} at index ${i} is not finite`);
    };
    const addon = values.length >= 1 << 16 ? platform.nativeAddon() : null;
    if (addon) {
      // the same test on the addon (~20x; a 7B's weights are checked as they are quantized at load)
      const i = addon.firstUnrepresentable(values, dtype === 'bfloat16' ? FORMAT_CODES.bfloat16 : FORMAT_CODES.float32);
      if (i >= 0) bad(i);
      return;
    }
    const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
    const low = dtype === 'bfloat16' ? 0xffff : 0;
    for (let i = 0; i < bits.length; i++) {
      const u = bits[i];
      if ((u & 0x7f800000) === 0x7f800000 || (u & low) !== 0) bad(i);
    }
    return;
  }
  const rounded = roundToDtype(values, dtype);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!isFinite(v)) throw new QuantizationError(name, `value ${v} at index ${i} is not finite`);
    if (rounded[i] !== v) {
      throw new QuantizationError(name, `value ${v} at index ${i} is not a ${dtype} value (the weight's dtype)`);
    }
  }
}
