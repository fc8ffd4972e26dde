/**
 * Stage 1 of the demo's training: the image tower learns to see the shapes before the language model
 * learns to talk about them, as Video-LLaVA's CLIP/LanguageBind towers were trained before it. Three
 * temporary linear heads on the mean of the tower's last hidden states classify each frame's shape,
 * colour and number of shapes; frames come from images and from random frames of videos. Afterwards the
 * heads are dropped and the video tower starts as a copy of the image tower (same architecture, frames are
 * images). Measured: without this stage the decoder's answer loss alone teaches the towers colour and
 * count within a few hundred steps but shape hardly at all.
 */
import * as tf from '@tensorflow/tfjs';
import { ExampleOptions, makeExample } from '../../src/data/questions';
import { COLOUR_NAMES, MAX_COUNT, SHAPES, SceneFacts } from '../../src/data/shapes';
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

/** What one frame shows: its shape count, and the shape and colour when there is one. */
export function frameLabels(facts: SceneFacts, t: number): { count: number; shape: number; colour: number } {
  const k = facts.changeFrame ?? 0;
  const visible = facts.event === 'appear' ? t >= k : facts.event === 'disappear' ? t < k : true;
  const colour = facts.event === 'recolour' && t >= k ? facts.toColour! : facts.colour;
  return { count: visible ? facts.count : 0, shape: SHAPES.indexOf(facts.shape), colour: COLOUR_NAMES.indexOf(colour) };
}

interface Heads {
  shape: Parameter; // [4, D]
  colour: Parameter; // [6, D]
  count: Parameter; // [MAX_COUNT + 1, D]
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
  const heads: Heads = { shape: new Parameter([SHAPES.length, D]), colour: new Parameter([COLOUR_NAMES.length, D]), count: new Parameter([MAX_COUNT + 1, D]) };
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
        return frameLabels(ex.facts, t);
      });
      const visible = labels.map((l) => (l.count > 0 ? 1 : 0));
      const predictions: Record<string, Int32Array> = {};
      const input = tf.tensor4d(pixels, [B, 3, size, size]);
      const { loss, grads } = valueAndGrads(params, () => {
        const { hiddenStates } = tower.call(input);
        const pooled = tf.mean(hiddenStates[hiddenStates.length - 1]!, 1) as tf.Tensor2D; // [B, D]
        const logits = (p: Parameter) => tf.matMul(pooled, p.value, false, true) as tf.Tensor2D;
        const terms: Array<[keyof Heads, number[], number[]]> = [
          ['shape', labels.map((l) => l.shape), visible],
          ['colour', labels.map((l) => l.colour), visible],
          ['count', labels.map((l) => l.count), labels.map(() => 1)],
        ];
        let total = tf.scalar(0);
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
        log(`vision step ${String(step + 1).padStart(4)}  loss ${lossValue.toFixed(4)}  accuracy (training frames) shape ${last.shape.toFixed(3)} colour ${last.colour.toFixed(3)} count ${last.count.toFixed(3)}`);
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
