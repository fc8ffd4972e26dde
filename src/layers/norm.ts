import * as tf from '@tensorflow/tfjs';
import { Module, Parameter } from './module';

/** (x − mean) / sqrt(biased var + eps) · γ + β over the last dimension. */
export class LayerNorm extends Module<[tf.Tensor], tf.Tensor> {
  readonly weight: Parameter;
  readonly bias: Parameter;

  constructor(
    readonly dim: number,
    readonly eps = 1e-5,
  ) {
    super();
    this.weight = this.addParameter('weight', [dim]);
    this.bias = this.addParameter('bias', [dim]);
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const mean = tf.mean(x, -1, true);
      const centered = tf.sub(x, mean);
      const variance = tf.mean(tf.square(centered), -1, true);
      const normed = tf.mul(centered, tf.rsqrt(tf.add(variance, this.eps)));
      return tf.add(tf.mul(normed, this.weight.value), this.bias.value);
    });
  }
}

/** Llama RMSNorm: x · rsqrt(mean(x²) + eps) · w; statistics in float32 (all tensors here are float32). */
export class RMSNorm extends Module<[tf.Tensor], tf.Tensor> {
  readonly weight: Parameter;

  constructor(
    readonly dim: number,
    readonly eps = 1e-6,
  ) {
    super();
    this.weight = this.addParameter('weight', [dim]);
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const meanSquare = tf.mean(tf.square(x), -1, true);
      return tf.mul(tf.mul(x, tf.rsqrt(tf.add(meanSquare, this.eps))), this.weight.value);
    });
  }
}
