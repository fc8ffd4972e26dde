import * as tf from '@tensorflow/tfjs';
import { WeightsError } from '../errors';
import { storedMatMul } from '../native/stored_matmul';
import { Module, Parameter, TRANSPOSED_2D } from './module';

/**
 * y = x·Wᵀ + b with W in PyTorch's [out, in] layout, the layout the checkpoint stores. The weight is kept
 * transposed ([in, out], arranged once at load time) so the forward is a plain matMul: the stock wasm
 * kernel runs ~10× slower with transposeB. Loaded in a 16-bit (or quantized) format, the weight stays as the
 * checkpoint stores it, outside the tensor heap, and the product runs on src/native/stored_matmul.ts.
 *
 * Optional LoRA slot (PEFT's vanilla LoRA): y += lora_B(lora_A(x)) · scaling, with children named as
 * PEFT names them, so the adapter's weights are `<path>.lora_A.weight` [r, in] and
 * `<path>.lora_B.weight` [out, r]. src/training/lora.ts attaches, merges and removes adapters.
 */
export class Linear extends Module<[tf.Tensor], tf.Tensor> {
  readonly weight: Parameter; // checkpoint [out, in]; stored [in, out]
  readonly bias: Parameter | null; // [out]
  lora_A: Linear | null = null; // [r, in], no bias
  lora_B: Linear | null = null; // [out, r], no bias
  loraScaling = 0; // lora_alpha / r (or / √r with rsLoRA)

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    bias = true,
  ) {
    super();
    this.weight = this.addParameter('weight', [outFeatures, inFeatures], TRANSPOSED_2D, true);
    this.bias = bias ? this.addParameter('bias', [outFeatures]) : null;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const lead = x.shape.slice(0, -1);
      const x2 = tf.reshape(x, [-1, this.inFeatures]) as tf.Tensor2D;
      const stored = this.weight.stored;
      let y = stored ? storedMatMul(x2, stored) : tf.matMul(x2, this.weight.value); // [rows, in] · [in, out]
      if (this.bias) y = tf.add(y, this.bias.value);
      if (this.lora_A && this.lora_B) y = tf.add(y, tf.mul(this.lora_B.call(this.lora_A.call(x2)), this.loraScaling));
      return tf.reshape(y, [...lead, this.outFeatures]);
    });
  }

  /** Adds an adapter of rank r with unloaded parameters lora_A.weight [r, in] and lora_B.weight [out, r]. */
  attachLora(r: number, scaling: number): void {
    if (this.lora_A) throw new WeightsError('this Linear already has a LoRA adapter');
    this.lora_A = this.addModule('lora_A', new Linear(this.inFeatures, r, false));
    this.lora_B = this.addModule('lora_B', new Linear(r, this.outFeatures, false));
    this.loraScaling = scaling;
  }

  /** Removes the adapter and frees its weights (the base weight is left as it is). */
  detachLora(): void {
    if (!this.lora_A || !this.lora_B) return;
    this.lora_A.dispose();
    this.lora_B.dispose();
    this.removeModule('lora_A');
    this.removeModule('lora_B');
    this.lora_A = this.lora_B = null;
    this.loraScaling = 0;
  }
}
