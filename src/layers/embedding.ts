import * as tf from '@tensorflow/tfjs';
import { InputError } from '../errors';
import { Module, Parameter } from './module';

/** Row lookup in a [num, dim] table; ids outside the table are an error, not a silent zero row. */
export class Embedding extends Module<[tf.Tensor], tf.Tensor> {
  readonly weight: Parameter; // [num, dim]

  constructor(
    readonly numEmbeddings: number,
    readonly dim: number,
  ) {
    super();
    this.weight = this.addParameter('weight', [numEmbeddings, dim]);
  }

  forward(ids: tf.Tensor): tf.Tensor {
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
