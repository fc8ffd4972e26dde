import * as tf from '@tensorflow/tfjs';
import { Activation, getActivation } from './activations';
import { Linear } from './linear';
import { Module } from './module';

/** fc2(act(fc1(x))): the CLIP MLP. */
export class ClipMLP extends Module<[tf.Tensor], tf.Tensor> {
  readonly fc1: Linear;
  readonly fc2: Linear;
  private readonly act: Activation;

  constructor(hidden: number, intermediate: number, act: string) {
    super();
    this.fc1 = this.addModule('fc1', new Linear(hidden, intermediate));
    this.fc2 = this.addModule('fc2', new Linear(intermediate, hidden));
    this.act = getActivation(act);
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.fc2.call(this.act(this.fc1.call(x))));
  }
}

/** down(act(gate(x)) ⊙ up(x)): the Llama gated MLP (SwiGLU with silu). */
export class GatedMLP extends Module<[tf.Tensor], tf.Tensor> {
  readonly gate_proj: Linear;
  readonly up_proj: Linear;
  readonly down_proj: Linear;
  private readonly act: Activation;

  constructor(hidden: number, intermediate: number, act: string, bias: boolean) {
    super();
    this.gate_proj = this.addModule('gate_proj', new Linear(hidden, intermediate, bias));
    this.up_proj = this.addModule('up_proj', new Linear(hidden, intermediate, bias));
    this.down_proj = this.addModule('down_proj', new Linear(intermediate, hidden, bias));
    this.act = getActivation(act);
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.down_proj.call(tf.mul(this.act(this.gate_proj.call(x)), this.up_proj.call(x))));
  }
}
