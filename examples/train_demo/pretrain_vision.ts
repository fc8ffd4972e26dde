/**
 * Stage 1 of the demo's training: the image tower learns to see the shapes before the language model
 * learns to talk about them, as Video-LLaVA's CLIP/LanguageBind towers were trained before it. Temporary
 * linear heads on the mean of the tower's last hidden states classify each frame's shape, colour and
 * number of shapes and regress where a single shape is (so that the features carry position: RoPE
 * gives the decoder positions only through attention weights, never in the values it reads, and a
 * direction of motion needs them); frames come from images and from random frames of videos. Afterwards the
 * heads are dropped and the video tower starts as a copy of the image tower (same architecture, frames are
 * images). Measured: without this stage the decoder's answer loss alone teaches the towers colour and
 * count within a few hundred steps but shape hardly at all.
 */
import * as tf from '@tensorflow/tfjs';
import { ExampleOptions, ShapesExample, makeExample } from '../../src/data/questions';
import { COLOUR_NAMES, MAX_COUNT, SHAPES } from '../../src/data/shapes';
import { Parameter } from '../../src/layers/module';
import { ClipVisionModel } from '../../src/models/clip/modeling';
import { VideoLlavaForConditionalGeneration } from '../../src/models/video_llava/modeling';
import { ImagePreprocessorConfig, preprocessImage } from '../../src/processing/image';
import { disposeGrads, valueAndGrads } from '../../src/training/grad';
import { AdamW, clipGradNorm } from '../../src/training/optimizer';
import { Rng, hashSeed } from '../../src/data/rng';

export interface VisionPretrainingConfig {
  steps: number;
  batchSize: number;
  lr: number;
  /** Data set seed of this stage (another stream than the conversations'). */
  dataSeed: number;
}

interface FrameLabels {
  count: number;
  shape: number;
  colour: number;
  /** Centre of the shape when there is exactly one, else null. */
  centre: [number, number] | null;
}

/** What frame t of an example shows: its shape count, the shape and colour when there is one, where a single shape is. */
export function frameLabels(ex: ShapesExample, t: number): FrameLabels {
  const { facts } = ex;
  const k = facts.changeFrame ?? 0;
  const colour = facts.event === 'recolour' && t >= k ? facts.toColour! : facts.colour;
  const drawn = ex.shapes[t];
  return { count: drawn.length, shape: SHAPES.indexOf(facts.shape), colour: COLOUR_NAMES.indexOf(colour), centre: drawn.length === 1 ? [drawn[0].x, drawn[0].y] : null };
}

interface Heads {
  shape: Parameter; // [4, D]
  colour: Parameter; // [6, D]
  count: Parameter; // [MAX_COUNT + 1, D]
  centre: Parameter; // [2, D]: (x, y) of a single shape, regressed
}

function crossEntropy(logits: tf.Tensor2D, labels: number[], mask: number[]): tf.Scalar {
  return tf.tidy(() => {
    const logp = tf.logSoftmax(logits);
    const picked = tf.sum(tf.mul(logp, tf.oneHot(tf.tensor1d(labels, 'int32'), logits.shape[1])), 1);
    const m = tf.tensor1d(mask);
    return tf.div(tf.neg(tf.sum(tf.mul(picked, m))), Math.max(1, mask.reduce((a, b) => a + b, 0))) as tf.Scalar;
  });
}

/**
 * Trains `tower` (every parameter but post_layernorm, which Video-LLaVA never uses) with the three heads;
 * logs every `logEvery` steps. Returns the last logged accuracies.
 */
export function pretrainVisionTower(
  tower: ClipVisionModel,
  cfg: VisionPretrainingConfig,
  examples: ExampleOptions,
  pre: ImagePreprocessorConfig,
  log: (line: string) => void,
  logEvery = 50,
): Record<'shape' | 'colour' | 'count', number> {
  const D = tower.config.hidden_size;
  const rng = new Rng(hashSeed(cfg.dataSeed, 0x4ead5));
  const heads: Heads = {
    shape: new Parameter([SHAPES.length, D]),
    colour: new Parameter([COLOUR_NAMES.length, D]),
    count: new Parameter([MAX_COUNT + 1, D]),
    centre: new Parameter([2, D]),
  };
  for (const p of Object.values(heads)) p.set(tf.tensor(Array.from({ length: p.size }, () => 0.02 * rng.normal()), [...p.shape], 'float32'));
  const params: Array<[string, Parameter]> = [
    ...tower.namedParameters().filter(([n]) => !n.startsWith('post_layernorm')),
    ...Object.entries(heads).map(([n, p]) => [`head.${n}`, p] as [string, Parameter]),
  ];
  const opt = new AdamW(params, { lr: cfg.lr, weightDecay: 0.01 });
  const size = pre.crop_size.height;
  const correct = { shape: 0, colour: 0, count: 0 };
  const seen = { shape: 0, colour: 0, count: 0 };
  let last = { shape: 0, colour: 0, count: 0 };
  try {
    for (let step = 0; step < cfg.steps; step++) {
      opt.lr = cfg.lr * Math.min(1, (step + 1) / 20); // short warmup
      const B = cfg.batchSize;
      const pixels = new Float32Array(B * 3 * size * size);
      const labels = Array.from({ length: B }, (_, i) => {
        const ex = makeExample(cfg.dataSeed, step * B + i, examples);
        const t = rng.int(0, ex.frames.length - 1);
        pixels.set(preprocessImage(ex.frames[t], pre), i * 3 * size * size);
        return frameLabels(ex, t);
      });
      const visible = labels.map((l) => (l.count > 0 ? 1 : 0));
      const predictions: Record<string, Int32Array> = {};
      let centreLoss = 0;
      const input = tf.tensor4d(pixels, [B, 3, size, size]);
      const { loss, grads } = valueAndGrads(params, () => {
        const { hiddenStates } = tower.call(input);
        const pooled = tf.mean(hiddenStates[hiddenStates.length - 1]!, 1) as tf.Tensor2D; // [B, D]
        const logits = (p: Parameter) => tf.matMul(pooled, p.value, false, true) as tf.Tensor2D;
        // where the single shape is, so that the features say where a shape is and a decoder can follow it over frames
        const single: number[] = labels.map((l) => (l.centre ? 1 : 0));
        const target = tf.tensor2d(labels.map((l) => (l.centre ? l.centre.map((v) => 4 * (v - 0.5)) : [0, 0]))); // [B, 2], about ±1
        const err = tf.sum(tf.square(tf.sub(logits(heads.centre), target)), 1);
        let total = tf.div(tf.sum(tf.mul(err, tf.tensor1d(single))), Math.max(1, single.reduce((a, b) => a + b, 0))) as tf.Scalar;
        centreLoss = total.dataSync()[0];
        const terms: Array<[Exclude<keyof Heads, 'centre'>, number[], number[]]> = [
          ['shape', labels.map((l) => l.shape), visible],
          ['colour', labels.map((l) => l.colour), visible],
          ['count', labels.map((l) => l.count), labels.map(() => 1)],
        ];
        for (const [name, y, mask] of terms) {
          const z = logits(heads[name]);
          predictions[name] = tf.argMax(z, 1).dataSync() as Int32Array;
          total = tf.add(total, crossEntropy(z, y, mask));
        }
        return total as tf.Scalar;
      });
      input.dispose();
      clipGradNorm(grads, 1.0);
      opt.step(grads);
      disposeGrads(grads);
      const lossValue = loss.dataSync()[0];
      loss.dispose();
      labels.forEach((l, i) => {
        correct.count += predictions.count[i] === l.count ? 1 : 0;
        seen.count++;
        if (visible[i]) {
          correct.shape += predictions.shape[i] === l.shape ? 1 : 0;
          correct.colour += predictions.colour[i] === l.colour ? 1 : 0;
          seen.shape++;
          seen.colour++;
        }
      });
      if ((step + 1) % logEvery === 0 || step + 1 === cfg.steps) {
        last = { shape: correct.shape / seen.shape, colour: correct.colour / seen.colour, count: correct.count / seen.count };
        log(`vision step ${String(step + 1).padStart(4)}  loss ${lossValue.toFixed(4)}  accuracy (training frames) shape ${last.shape.toFixed(3)} colour ${last.colour.toFixed(3)} count ${last.count.toFixed(3)}, centre error ${(Math.sqrt(centreLoss / 2) / 4).toFixed(3)} of the side`);
        for (const k of Object.keys(correct) as Array<keyof typeof correct>) correct[k] = seen[k] = 0;
      }
    }
  } finally {
    opt.dispose();
    for (const p of Object.values(heads)) p.dispose();
  }
  return last;
}

/** The video tower becomes a copy of the image tower (both are CLIP towers of the same config). */
export function copyImageTowerToVideoTower(model: VideoLlavaForConditionalGeneration): void {
  const source = new Map(model.model.image_tower.namedParameters());
  for (const [name, p] of model.model.video_tower.namedParameters()) p.value.assign(source.get(name)!.value);
}
