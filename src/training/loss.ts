/**
 * The causal language-modelling loss exactly as transformers 5.24 computes it (ForCausalLMLoss):
 * labels are shifted left by one (position t predicts labels[t + 1], the last position predicts
 * nothing), labels equal to ignoreIndex (-100) are skipped, and the cross entropy of the counted
 * positions is averaged over their number — or, when numItemsInBatch is given (the Trainer does it under
 * gradient accumulation), summed and divided by that number instead.
 */
import * as tf from '@tensorflow/tfjs';
import { InputError } from '../errors';
import type { IntMatrix } from '../models/video_llava/modeling';

export interface CausalLmLossOptions {
  /** Label value that is not counted (default -100, the config's ignore_index). */
  ignoreIndex?: number;
  /** Divide the summed loss by this instead of the number of counted tokens (transformers' num_items_in_batch). */
  numItemsInBatch?: number;
}

/** The shifted targets: row-major flat positions that count, and the token each must predict. */
function shiftedTargets(labels: number[][], B: number, L: number, V: number, ignoreIndex: number): { positions: number[]; targets: number[] } {
  if (labels.length !== B || labels.some((r) => r.length !== L)) {
    throw new InputError('labels', `expected ${B} rows of length ${L} (the logits' [batch, length]), found ${labels.length} rows of lengths [${labels.map((r) => r.length).join(', ')}]`);
  }
  const positions: number[] = [];
  const targets: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let t = 0; t + 1 < L; t++) {
      const target = labels[b][t + 1];
      if (target === ignoreIndex) continue;
      if (!Number.isInteger(target) || target < 0 || target >= V) {
        throw new InputError('labels', `label ${target} at [${b}, ${t + 1}] is outside the vocabulary [0, ${V}) and is not the ignore index ${ignoreIndex}`);
      }
      positions.push(b * L + t);
      targets.push(target);
    }
  }
  return { positions, targets };
}

function labelRows(labels: IntMatrix): number[][] {
  if (Array.isArray(labels)) return labels;
  if (labels.rank !== 2) throw new InputError('labels', `expected a 2-D [batch, length] tensor, found shape [${labels.shape.join(', ')}]`);
  return labels.arraySync() as number[][];
}

/**
 * Mean (or sum / numItemsInBatch) cross entropy of logits [B, L, V] against labels [B, L] shifted by one.
 * With no counted token the mean is NaN, as in torch (0 / 0); with numItemsInBatch it is 0.
 */
export function causalLmLoss(logits: tf.Tensor, labels: IntMatrix, options: CausalLmLossOptions = {}): tf.Scalar {
  if (logits.rank !== 3) throw new InputError('logits', `expected [batch, length, vocab], found shape [${logits.shape.join(', ')}]`);
  const [B, L, V] = logits.shape;
  const ignoreIndex = options.ignoreIndex ?? -100;
  const { numItemsInBatch } = options;
  if (numItemsInBatch !== undefined && !(numItemsInBatch > 0)) {
    throw new InputError('numItemsInBatch', `expected a positive number, found ${numItemsInBatch}`);
  }
  const { positions, targets } = shiftedTargets(labelRows(labels), B, L, V, ignoreIndex);
  const divisor = numItemsInBatch ?? positions.length;
  return tf.tidy(() => {
    if (positions.length === 0) return tf.div(tf.mul(tf.sum(logits), 0), divisor) as tf.Scalar; // 0/0 = NaN as in torch
    const rows = tf.gather(tf.reshape(logits, [B * L, V]), tf.tensor1d(positions, 'int32')); // [N, V]
    const logProbs = tf.reshape(tf.logSoftmax(rows), [-1]); // [N·V]
    const picked = tf.gather(logProbs, tf.tensor1d(targets.map((t, i) => i * V + t), 'int32')); // [N]
    return tf.div(tf.neg(tf.sum(picked)), divisor) as tf.Scalar;
  });
}

/** Number of tokens the loss counts in `labels` (for numItemsInBatch over several micro-batches). */
export function countLabelTokens(labels: IntMatrix, ignoreIndex = -100): number {
  let n = 0;
  for (const row of labelRows(labels)) for (let t = 1; t < row.length; t++) if (row[t] !== ignoreIndex) n++;
  return n;
}
