import * as tf from '@tensorflow/tfjs';
import { Module, Parameter } from './module';

/** y = x·Wᵀ + b with W in PyTorch's [out, in] layout, the layout the checkpoint stores. */
export class Linear extends Module<[tf.Tensor], tf.Tensor> {
  readonly weight: Parameter; // [out, in]
  readonly bias: Parameter | null; // [out]

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    bias = true,
  ) {
    super();
    this.weight = this.addParameter('weight', [outFeatures, inFeatures]);
    this.bias = bias ? this.addParameter('bias', [outFeatures]) : null;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const lead = x.shape.slice(0, -1);
      const x2 = tf.reshape(x, [-1, this.inFeatures]);
      let y = tf.matMul(x2, this.weight.value, false, true);
      if (this.bias) y = tf.add(y, this.bias.value);
      return tf.reshape(y, [...lead, this.outFeatures]);
    });
  }
}
