import * as tf from '@tensorflow/tfjs';
import { InputError } from '../errors';
import { StoredWeight } from '../weights/stored';
import { Module, Parameter } from './module';

/**
 * Row lookup in a [num, dim] table; ids outside the table are an error, not a silent zero row. A `large` table
 * (the decoder's token embeddings) may stay in its stored 16-bit format outside the tensor heap; only the rows
 * looked up are widened.
 */
export class Embedding extends Module<[tf.Tensor], tf.Tensor> {
  readonly weight: Parameter; // [num, dim]

  constructor(
    readonly numEmbeddings: number,
    readonly dim: number,
    { large = false }: { large?: boolean } = {},
  ) {
    super();
    this.weight = this.addParameter('weight', [numEmbeddings, dim], null, large);
  }

  forward(ids: tf.Tensor): tf.Tensor {
    const stored = this.weight.stored;
    if (stored) return gatherStored(stored, ids);
    return tf.tidy(() => tf.reshape(tf.gather(this.weight.value, tf.reshape(ids, [-1])), [...ids.shape, this.dim]));
  }

  /** Throws when an id is out of range (tf.gather would return zeros or garbage). */
  checkIds(ids: ArrayLike<number>, argument = 'inputIds'): void {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.numEmbeddings) {
        throw new InputError(argument, `token id ${id} at flat index ${i} is outside the vocabulary [0, ${this.numEmbeddings})`);
      }
    }
  }
}

/** Rows of a stored table, widened one by one into a new [...ids.shape, dim] tensor (no gradient: stored weights are frozen). */
function gatherStored(w: StoredWeight, ids: tf.Tensor): tf.Tensor {
  const flat = ids.dataSync();
  const dim = w.cols;
  const out = new Float32Array(flat.length * dim);
  for (let i = 0; i < flat.length; i++) {
    const id = flat[i];
    if (!Number.isInteger(id) || id < 0 || id >= w.rows) throw new InputError('ids', `token id ${id} at flat index ${i} is outside the table [0, ${w.rows})`);
    out.set(w.widenRows(id, id + 1), i * dim);
  }
  return tf.tensor(out, [...ids.shape, dim]);
}
