/**
 * Key/value cache for the decoder: per layer, keys and values after RoPE, [B, Hkv, T, D].
 * The cache owns its tensors; dispose() frees them.
 */
import * as tf from '@tensorflow/tfjs';

export interface KVCache {
  /** Positions already cached (before the current call). */
  readonly length: number;
  /** Adds this step's keys/values for `layer` and returns the full keys/values to attend over. */
  update(layer: number, k: tf.Tensor4D, v: tf.Tensor4D): { k: tf.Tensor4D; v: tf.Tensor4D };
  /** Called once per forward after every layer has been updated. */
  commit(newTokens: number): void;
  dispose(): void;
}

/** The simple cache: concatenation per step. */
export class DynamicCache implements KVCache {
  private keys: tf.Tensor4D[] = [];
  private values: tf.Tensor4D[] = [];
  private seen = 0;

  get length(): number {
    return this.seen;
  }

  update(layer: number, k: tf.Tensor4D, v: tf.Tensor4D): { k: tf.Tensor4D; v: tf.Tensor4D } {
    const oldK = this.keys[layer];
    const oldV = this.values[layer];
    const newK = oldK ? (tf.concat([oldK, k], 2) as tf.Tensor4D) : tf.keep(k.clone());
    const newV = oldV ? (tf.concat([oldV, v], 2) as tf.Tensor4D) : tf.keep(v.clone());
    tf.keep(newK);
    tf.keep(newV);
    oldK?.dispose();
    oldV?.dispose();
    this.keys[layer] = newK;
    this.values[layer] = newV;
    return { k: newK, v: newV };
  }

  commit(newTokens: number): void {
    this.seen += newTokens;
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t?.dispose();
    this.keys = [];
    this.values = [];
    this.seen = 0;
  }
}
