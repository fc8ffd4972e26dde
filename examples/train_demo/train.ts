/**
 * Trains the shipped demo model (assets/trained-model) from scratch with this package's training API:
 * a small Video-LLaVA (both CLIP towers, projector, Llama decoder, word-level tokenizer) on procedural
 * shape images and videos (src/data), every parameter trainable, AdamW with warmup and cosine decay,
 * gradient clipping. Settings and seeds: config.json next to this file.
 *
 * Run from the repository root (default backend: wasm with native matmul when nblas loads):
 *   npx tsc -p tsconfig.json --outDir tmp/examples
 *   node tmp/examples/examples/train_demo/train.js [--out assets/trained-model] [--work tmp/train_demo]
 *        [--steps N] [--fresh]
 * Stage 1 (pretrain_vision.ts) trains the image tower alone with temporary heads and copies it into the
 * video tower; stage 2 trains every parameter on multi-turn conversations (plus a share of single-turn
 * direction questions, see directionFocus in common.ts).
 * It checkpoints to --work after stage 1 and every `checkpointEvery` steps (weights, AdamW moments, step)
 * and resumes from there unless --fresh is given: the examples of a step depend only on the step number
 * (stepExamples), so a resumed run sees the same data it would have seen.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { setBackend } from '../../src/backend';
import { VideoLlavaForConditionalGeneration } from '../../src/models/video_llava/modeling';
import { nativeMatmulStatus } from '../../src/native';
import { LlamaTokenizer } from '../../src/processing/tokenizer';
import { trainableParameters } from '../../src/training/grad';
import { AdamW, trainStep } from '../../src/training/optimizer';
import { countParameters } from '../../src/training/params';
import { savePretrained } from '../../src/training/save';
import { SafetensorsFile, writeSafetensors } from '../../src/weights/safetensors';
import { copyImageTowerToVideoTower, pretrainVisionTower } from './pretrain_vision';
import { Batch, TrainConfig, demoTokenizerFiles, disposeBatch, exampleOptions, initWeights, stepExamples, makeBatch, modelConfig, preprocessorConfig, readTrainConfig, writeSideFiles } from './common';

function arg(name: string, fallback?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

/** Linear warmup to lr, then cosine decay to minLr at the last step. */
export function learningRate(step: number, t: TrainConfig['training']): number {
  if (step < t.warmupSteps) return (t.lr * (step + 1)) / t.warmupSteps;
  const progress = (step - t.warmupSteps) / Math.max(1, t.steps - t.warmupSteps);
  return t.minLr + 0.5 * (t.lr - t.minLr) * (1 + Math.cos(Math.PI * Math.min(1, progress)));
}

// AdamW keeps its moments private; a checkpoint needs them, so this script reads that one field.
interface AdamMoments {
  step: number;
  expAvg: tf.Tensor;
  expAvgSq: tf.Tensor;
}
const momentsOf = (opt: AdamW) => (opt as unknown as { state: Map<string, AdamMoments> }).state;

interface Progress {
  /** Stage 1 (vision pretraining) is done. */
  visionDone: boolean;
  /** Stage 2 steps done. */
  step: number;
  elapsedMs: number;
}

async function saveCheckpoint(work: string, model: VideoLlavaForConditionalGeneration, opt: AdamW, progress: Progress): Promise<void> {
  await savePretrained(model, path.join(work, 'model'));
  const tensors: Record<string, tf.Tensor> = {};
  for (const [name, s] of momentsOf(opt)) {
    tensors[`${name}.exp_avg`] = s.expAvg;
    tensors[`${name}.exp_avg_sq`] = s.expAvgSq;
  }
  const steps = Object.fromEntries([...momentsOf(opt)].map(([name, s]) => [name, s.step]));
  await writeSafetensors(path.join(work, 'optimizer.safetensors'), tensors, { steps: JSON.stringify(steps) });
  await fsp.writeFile(path.join(work, 'progress.json'), JSON.stringify(progress) + '\n');
}

async function loadCheckpoint(work: string, opt: AdamW): Promise<Progress> {
  const file = await SafetensorsFile.open(path.join(work, 'optimizer.safetensors'));
  try {
    const steps = JSON.parse(file.metadata.steps ?? '{}') as Record<string, number>;
    for (const [name] of opt.params) {
      if (!(name in steps)) continue;
      momentsOf(opt).set(name, { step: steps[name], expAvg: await file.readTensor(`${name}.exp_avg`), expAvgSq: await file.readTensor(`${name}.exp_avg_sq`) });
    }
  } finally {
    await file.close();
  }
  return JSON.parse(await fsp.readFile(path.join(work, 'progress.json'), 'utf8')) as Progress;
}

async function exists(file: string): Promise<boolean> {
  return fsp.access(file).then(
    () => true,
    () => false,
  );
}

async function main(): Promise<void> {
  const cfg = await readTrainConfig(arg('config'));
  if (arg('steps')) cfg.training.steps = Number(arg('steps'));
  const out = arg('out', 'assets/trained-model')!;
  const work = arg('work', 'tmp/train_demo')!;
  const fresh = process.argv.includes('--fresh');
  const backend = await setBackend();
  console.log(`backend ${backend}; ${nativeMatmulStatus().reason}`);

  const tok = demoTokenizerFiles();
  await writeSideFiles(out, cfg, tok);
  const tokenizer = LlamaTokenizer.fromPretrained(out);
  const pre = preprocessorConfig(cfg);

  const resume = !fresh && (await exists(path.join(work, 'progress.json')));
  let model: VideoLlavaForConditionalGeneration;
  if (resume) {
    model = await VideoLlavaForConditionalGeneration.fromPretrained(path.join(work, 'model'));
  } else {
    model = new VideoLlavaForConditionalGeneration(modelConfig(cfg, tok));
    initWeights(model, cfg.seed);
  }
  const t = cfg.training;
  const opt = new AdamW(trainableParameters(model), { lr: t.lr, betas: t.betas, weightDecay: t.weightDecay });
  const progress: Progress = resume ? await loadCheckpoint(work, opt) : { visionDone: false, step: 0, elapsedMs: 0 };
  console.log(`${countParameters(model).toLocaleString('en-US')} parameters; ${resume ? `resuming at step ${progress.step}` : 'from scratch'}; ${t.steps} steps of ${t.batchSize}`);

  const options = exampleOptions(cfg);
  const started = Date.now() - progress.elapsedMs;
  if (!progress.visionDone) {
    // stage 1: the image tower learns to see (temporary heads), then the video tower starts as its copy
    pretrainVisionTower(model.model.image_tower, cfg.visionPretraining, options, pre, console.log);
    copyImageTowerToVideoTower(model);
    progress.visionDone = true;
    await saveCheckpoint(work, model, opt, { ...progress, elapsedMs: Date.now() - started });
  }
  let lossSum = 0;
  let lossCount = 0;
  for (let step = progress.step; step < t.steps; step++) {
    opt.lr = learningRate(step, t);
    const batch: Batch = makeBatch(stepExamples(cfg, step), tokenizer, cfg, pre);
    try {
      const { loss, gradNorm } = trainStep(
        opt,
        [batch],
        (b) => {
          const o = model.forward({ inputIds: b.inputIds, attentionMask: b.attentionMask, pixelValuesImages: b.images, pixelValuesVideos: b.videos, labels: b.labels });
          o.logits.dispose();
          return o.loss!;
        },
        { maxGradNorm: t.maxGradNorm },
      );
      lossSum += loss;
      lossCount++;
      if ((step + 1) % t.logEvery === 0 || step === progress.step) {
        const secs = (Date.now() - started) / 1000;
        console.log(`step ${String(step + 1).padStart(5)}  loss ${(lossSum / lossCount).toFixed(4)}  grad ${gradNorm!.toFixed(3)}  lr ${opt.lr.toExponential(2)}  ${secs.toFixed(0)} s  (${tf.memory().numTensors} tensors)`);
        lossSum = 0;
        lossCount = 0;
      }
    } finally {
      disposeBatch(batch);
    }
    if ((step + 1) % t.checkpointEvery === 0 || step + 1 === t.steps) {
      await saveCheckpoint(work, model, opt, { visionDone: true, step: step + 1, elapsedMs: Date.now() - started });
    }
  }
  const total = (Date.now() - started) / 1000;
  await savePretrained(model, out);
  console.log(`trained ${t.steps} steps in ${(total / 60).toFixed(1)} min (resumes included); saved to ${out}`);
  opt.dispose();
  model.dispose();
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e instanceof Error ? `${e.name}: ${e.message}` : e);
    process.exit(1);
  });
}
