import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../errors';

export type Activation = (x: tf.Tensor) => tf.Tensor;

/** x·σ(1.702x): CLIP's default vision activation. */
export const quickGelu: Activation = (x) => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702)));

/** Exact GELU, 0.5·x·(1 + erf(x/√2)): torch.nn.functional.gelu without approximation. */
export const geluErf: Activation = (x) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2))));

/** tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715x³))). */
export const geluTanh: Activation = (x) =>
  tf.mul(
    tf.mul(x, 0.5),
    tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3)))))),
  );

export const silu: Activation = (x) => tf.mul(x, tf.sigmoid(x));

export const relu: Activation = (x) => tf.relu(x);

/** Names as transformers' ACT2FN spells them. */
const ACTIVATIONS: Record<string, Activation> = {
  quick_gelu: quickGelu,
  gelu: geluErf,
  gelu_python: geluErf,
  gelu_new: geluTanh,
  gelu_pytorch_tanh: geluTanh,
  gelu_fast: geluTanh,
  silu,
  swish: silu,
  relu,
};

export function getActivation(name: string, field = 'hidden_act'): Activation {
  const fn = ACTIVATIONS[name];
  if (!fn) throw new ConfigError(field, `unsupported activation "${name}"; supported: ${Object.keys(ACTIVATIONS).join(', ')}`);
  return fn;
}
