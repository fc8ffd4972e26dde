import * as tf from '@tensorflow/tfjs';
import { Activation, getActivation } from '../../layers/activations';
import { Linear } from '../../layers/linear';
import { Module } from '../../layers/module';

/** linear_2(act(linear_1(x))): vision width (× number of feature layers) → text width, shared by images and videos. */
export class VideoLlavaMultiModalProjector extends Module<[tf.Tensor], tf.Tensor> {
  readonly linear_1: Linear;
  readonly linear_2: Linear;
  private readonly act: Activation;

  constructor(inDim: number, textDim: number, act: string, bias: boolean) {
    super();
    this.linear_1 = this.addModule('linear_1', new Linear(inDim, textDim, bias));
    this.linear_2 = this.addModule('linear_2', new Linear(textDim, textDim, bias));
    this.act = getActivation(act, 'projector_hidden_act');
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.linear_2.call(this.act(this.linear_1.call(x))));
  }
}
