/**
 * Rotary position embeddings in the Hugging Face "half-split" convention:
 * rotate_half(x) = concat(−x[..., d/2:], x[..., :d/2]); cos/sin = cos/sin(concat(f, f)) with f = pos ⊗ inv_freq.
 * inv_freq is computed the way torch does it in float32 (each step rounded to float32 with Math.fround),
 * so angles at long positions match the reference.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../errors';

export interface RopeParameters {
  rope_type: 'default' | 'linear' | 'dynamic' | 'llama3';
  rope_theta: number;
  factor?: number;
  low_freq_factor?: number;
  high_freq_factor?: number;
  original_max_position_embeddings?: number;
}

const f32 = Math.fround;

function baseInvFreq(base: number, dim: number): Float32Array {
  const inv = new Float32Array(dim / 2);
  for (let j = 0; j < dim / 2; j++) inv[j] = f32(1 / f32(Math.pow(base, f32((2 * j) / dim))));
  return inv;
}

export class RotaryEmbedding {
  private readonly inv: Float32Array;

  constructor(
    readonly dim: number,
    readonly params: RopeParameters,
    readonly maxPositionEmbeddings: number,
  ) {
    if (dim % 2 !== 0) throw new ConfigError('head_dim', `rotary dimension must be even, found ${dim}`);
    this.inv = this.computeInvFreq();
  }

  private need(key: keyof RopeParameters): number {
    const v = this.params[key];
    if (typeof v !== 'number') {
      throw new ConfigError(`rope_parameters.${key}`, `required for rope_type "${this.params.rope_type}"`);
    }
    return v;
  }

  private computeInvFreq(): Float32Array {
    const { rope_type: type, rope_theta: theta } = this.params;
    const inv = baseInvFreq(theta, this.dim);
    if (type === 'linear') {
      const factor = this.need('factor');
      return inv.map((v) => f32(v / factor));
    }
    if (type === 'llama3') return this.llama3(inv);
    if (type !== 'default' && type !== 'dynamic') {
      throw new ConfigError('rope_parameters.rope_type', `unsupported rope type "${type}"`);
    }
    return inv;
  }

  /** Llama 3.1: long wavelengths divided by factor, a smooth blend between the two cut-offs. */
  private llama3(inv: Float32Array): Float32Array {
    const factor = this.need('factor');
    const low = this.need('low_freq_factor');
    const high = this.need('high_freq_factor');
    const oldLen = this.params.original_max_position_embeddings ?? this.maxPositionEmbeddings;
    const lowWavelen = oldLen / low;
    const highWavelen = oldLen / high;
    return inv.map((f) => {
      const wavelen = f32((2 * Math.PI) / f);
      const scaled = wavelen > lowWavelen ? f32(f / factor) : f;
      if (wavelen < highWavelen || wavelen > lowWavelen) return scaled;
      const smooth = f32(f32(f32(oldLen / wavelen) - low) / (high - low));
      return f32(f32(f32(f32(1 - smooth) * scaled) / factor) + f32(smooth * scaled));
    });
  }

  /** Dynamic NTK: when the sequence outgrows max_position_embeddings the base is enlarged. */
  private invFreqFor(seqLen: number): Float32Array {
    if (this.params.rope_type !== 'dynamic' || seqLen <= this.maxPositionEmbeddings) return this.inv;
    const factor = this.need('factor');
    const d = this.dim;
    const ratio = f32(f32(f32(factor * seqLen) / this.maxPositionEmbeddings) - (factor - 1));
    const base = f32(this.params.rope_theta * f32(Math.pow(ratio, d / (d - 2))));
    return baseInvFreq(base, d);
  }

  /** cos and sin for positions [B, L] (plain numbers) → two tensors [B, 1, L, dim]. */
  cosSin(positions: number[][]): [tf.Tensor4D, tf.Tensor4D] {
    const B = positions.length;
    const L = positions[0]?.length ?? 0;
    let maxPos = 0;
    for (const row of positions) for (const p of row) maxPos = Math.max(maxPos, p);
    const inv = this.invFreqFor(maxPos + 1);
    const half = this.dim / 2;
    const cos = new Float32Array(B * L * this.dim);
    const sin = new Float32Array(B * L * this.dim);
    for (let b = 0; b < B; b++) {
      for (let l = 0; l < L; l++) {
        const base = (b * L + l) * this.dim;
        const p = positions[b][l];
        for (let j = 0; j < half; j++) {
          const angle = f32(p * inv[j]);
          const c = Math.cos(angle);
          const s = Math.sin(angle);
          cos[base + j] = cos[base + j + half] = c;
          sin[base + j] = sin[base + j + half] = s;
        }
      }
    }
    return [tf.tensor4d(cos, [B, 1, L, this.dim]), tf.tensor4d(sin, [B, 1, L, this.dim])];
  }
}

/** x·cos + rotate_half(x)·sin, for x [B, H, L, D]. */
export function applyRotary(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const half = x.shape[x.rank - 1] / 2;
    const [x1, x2] = tf.split(x, [half, half], -1);
    const rotated = tf.concat([tf.neg(x2), x1], -1);
    return tf.add(tf.mul(x, cos), tf.mul(rotated, sin));
  });
}
