/**
 * AdamW, global-norm clipping and gradient accumulation, each computing what its PyTorch counterpart
 * computes, in the same float32 order of operations:
 *   torch.optim.AdamW (single-tensor path, the one torch takes on CPU),
 *   torch.nn.utils.clip_grad_norm_ (norm of the per-tensor 2-norms, coefficient max_norm / (norm + 1e-6)
 *   clamped to 1, always applied),
 *   and the usual accumulation loop: for each micro-batch (loss / n).backward(), grads summed.
 */
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../errors';
import { Parameter } from '../layers/module';
import { NamedGrads, disposeGrads, valueAndGrads } from './grad';

export interface AdamWOptions {
  lr?: number; // 1e-3
  betas?: [number, number]; // [0.9, 0.999]
  eps?: number; // 1e-8
  weightDecay?: number; // 1e-2, decoupled: p ← p·(1 − lr·wd) before the Adam update
}

interface AdamState {
  step: number;
  expAvg: tf.Tensor; // m
  expAvgSq: tf.Tensor; // v
}

export class AdamW {
  /** Learning rate; may be changed between steps (schedulers). */
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private readonly state = new Map<string, AdamState>();

  constructor(
    readonly params: Array<[string, Parameter]>,
    options: AdamWOptions = {},
  ) {
    this.lr = options.lr ?? 1e-3;
    [this.beta1, this.beta2] = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 1e-2;
    const check = (name: string, v: number, ok: boolean) => {
      if (!ok) throw new InputError(`AdamW ${name}`, `invalid value ${v}`);
    };
    check('lr', this.lr, this.lr >= 0);
    check('betas[0]', this.beta1, this.beta1 >= 0 && this.beta1 < 1);
    check('betas[1]', this.beta2, this.beta2 >= 0 && this.beta2 < 1);
    check('eps', this.eps, this.eps >= 0);
    check('weightDecay', this.weightDecay, this.weightDecay >= 0);
  }

  /** Steps taken by a parameter (torch's state[p]["step"]); 0 before its first gradient. */
  stepsOf(name: string): number {
    return this.state.get(name)?.step ?? 0;
  }

  /** One update of every parameter that has a gradient in `grads` (others are skipped, as torch skips grad None). */
  step(grads: NamedGrads): void {
    for (const [name, p] of this.params) {
      const g = grads.get(name);
      if (!g) continue;
      if (g.shape.join() !== p.shape.join()) {
        throw new InputError('grads', `${name}: gradient shape [${g.shape}] differs from the parameter's [${p.shape}]`);
      }
      const s = this.state.get(name) ?? { step: 0, expAvg: tf.zerosLike(p.value), expAvgSq: tf.zerosLike(p.value) };
      s.step += 1;
      // grads speak the checkpoint layout (as torch's); the update runs in the parameter's storage layout
      const next = tf.tidy(() => this.update(p.value, p.layout ? p.toStorageLayout(g) : g, s));
      p.value.assign(next.param);
      tf.dispose([next.param, s.expAvg, s.expAvgSq]);
      s.expAvg = next.expAvg;
      s.expAvgSq = next.expAvgSq;
      this.state.set(name, s);
    }
  }

  /** The single-tensor update of torch/optim/adam.py, op by op (scalars round to float32 as torch's do). */
  private update(param: tf.Tensor, grad: tf.Tensor, s: AdamState): { param: tf.Tensor; expAvg: tf.Tensor; expAvgSq: tf.Tensor } {
    const { lr, beta1, beta2, eps, weightDecay } = this;
    let p = weightDecay !== 0 ? tf.mul(param, 1 - lr * weightDecay) : param;
    // exp_avg.lerp_(grad, 1 − β1): torch's lerp takes the formula that is exact at the nearer end.
    const w = Math.fround(1 - beta1);
    const expAvg = w < 0.5 ? tf.add(s.expAvg, tf.mul(w, tf.sub(grad, s.expAvg))) : tf.sub(grad, tf.mul(tf.sub(grad, s.expAvg), Math.fround(1 - w)));
    // exp_avg_sq.mul_(β2).addcmul_(grad, grad, value = 1 − β2)
    const expAvgSq = tf.add(tf.mul(s.expAvgSq, beta2), tf.mul(tf.mul(grad, 1 - beta2), grad));
    const biasCorrection1 = 1 - beta1 ** s.step; // float64, as Python computes it
    const biasCorrection2 = 1 - beta2 ** s.step;
    const stepSize = lr / biasCorrection1;
    const denom = tf.add(tf.div(tf.sqrt(expAvgSq), Math.sqrt(biasCorrection2)), eps);
    // param.addcdiv_(exp_avg, denom, value = −step_size)
    p = tf.add(p, tf.div(tf.mul(expAvg, -stepSize), denom));
    return { param: p, expAvg, expAvgSq };
  }

  /** Frees the moment estimates. */
  dispose(): void {
    for (const s of this.state.values()) tf.dispose([s.expAvg, s.expAvgSq]);
    this.state.clear();
  }
}

/**
 * torch.nn.utils.clip_grad_norm_: scales every gradient by min(maxNorm / (total + 1e-6), 1), where total
 * is the 2-norm of the per-tensor 2-norms. Replaces the map's tensors (the old ones are freed) and
 * returns the total norm before clipping.
 */
export function clipGradNorm(grads: NamedGrads, maxNorm: number): number {
  if (!(maxNorm > 0)) throw new InputError('maxNorm', `expected a positive number, found ${maxNorm}`);
  if (grads.size === 0) return 0;
  const total = tf.tidy(() => tf.norm(tf.stack([...grads.values()].map((g) => tf.norm(g)))));
  // torch evaluates `max_norm / t` as t.reciprocal() * max_norm
  const coef = tf.tidy(() => tf.minimum(tf.mul(tf.reciprocal(tf.add(total, 1e-6)), maxNorm), 1));
  for (const [name, g] of grads) {
    grads.set(name, tf.mul(g, coef));
    g.dispose();
  }
  const norm = total.dataSync()[0];
  tf.dispose([total, coef]);
  return norm;
}

/** Sums gradients over micro-batches, as repeated loss.backward() calls accumulate into .grad. */
export class GradientAccumulator {
  private sums: NamedGrads = new Map();
  private count = 0;

  /** Adds one micro-batch's gradients; takes ownership of them. */
  add(grads: NamedGrads): void {
    for (const [name, g] of grads) {
      const prev = this.sums.get(name);
      if (prev) {
        this.sums.set(name, tf.add(prev, g));
        tf.dispose([prev, g]);
      } else {
        this.sums.set(name, g);
      }
    }
    grads.clear();
    this.count++;
  }

  get microBatches(): number {
    return this.count;
  }

  /** Hands the sums to the caller (who disposes them) and starts over. */
  take(): NamedGrads {
    const out = this.sums;
    this.sums = new Map();
    this.count = 0;
    return out;
  }

  dispose(): void {
    disposeGrads(this.sums);
    this.count = 0;
  }
}

export interface TrainStepOptions {
  /** Clip the accumulated gradients to this global 2-norm (no clipping when absent). */
  maxGradNorm?: number;
  /**
   * 'mean' (default) divides each micro-batch loss by the number of micro-batches, the usual torch loop;
   * 'sum' adds the losses as they are (for losses already normalised over the whole step, e.g. with
   * causalLmLoss's numItemsInBatch).
   */
  reduction?: 'mean' | 'sum';
}

export interface TrainStepResult {
  /** The step's loss: the sum of the (scaled) micro-batch losses. */
  loss: number;
  /** Total gradient norm before clipping (only when maxGradNorm is set). */
  gradNorm?: number;
}

/**
 * One optimizer step over micro-batches, the torch loop
 *   for mb in microBatches: (loss(mb) / n).backward(); clip_grad_norm_(params, maxGradNorm); optimizer.step()
 * with gradients taken for the optimizer's parameters. Frees every tensor it creates.
 */
export function trainStep<T>(optimizer: AdamW, microBatches: T[], lossFn: (batch: T) => tf.Scalar, options: TrainStepOptions = {}): TrainStepResult {
  if (microBatches.length === 0) throw new InputError('microBatches', 'expected at least one micro-batch');
  const divisor = (options.reduction ?? 'mean') === 'mean' ? microBatches.length : 1;
  const acc = new GradientAccumulator();
  let loss = 0;
  try {
    for (const batch of microBatches) {
      const r = valueAndGrads(optimizer.params, () => (divisor === 1 ? lossFn(batch) : tf.div(lossFn(batch), divisor)) as tf.Scalar);
      loss += r.loss.dataSync()[0];
      r.loss.dispose();
      acc.add(r.grads);
    }
    const grads = acc.take();
    try {
      const gradNorm = options.maxGradNorm !== undefined ? clipGradNorm(grads, options.maxGradNorm) : undefined;
      optimizer.step(grads);
      return { loss, gradNorm };
    } finally {
      disposeGrads(grads);
    }
  } finally {
    acc.dispose();
  }
}
