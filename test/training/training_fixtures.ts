/** Access to the fixtures of reference/gen_training.py (test/fixtures/training). */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { VideoLlavaForConditionalGeneration } from '../../src/models/video_llava/modeling';
import { SafetensorsFile } from '../../src/weights/safetensors';
import { FIXTURES, diff } from '../helpers/fixtures';

export const TRAINING = path.join(FIXTURES, 'training');
export const TESTER = path.join(FIXTURES, 'models', 'tester');
export const PEFT_ADAPTER = path.join(TRAINING, 'peft_adapter');
/** Written by the tests only under REGENERATE_TS_OUTPUTS=1; gen_training.py checks them in Python. */
export const TS_SAVED_ADAPTER = path.join(TRAINING, 'ts_saved_adapter');
export const TS_SAVED_MODEL = path.join(TRAINING, 'ts_saved_model');
export const REGENERATE = process.env.REGENERATE_TS_OUTPUTS === '1';

export function openTraining(name: string): Promise<SafetensorsFile> {
  return SafetensorsFile.open(path.join(TRAINING, `${name}.safetensors`));
}

/** All tensors of a fixture file whose name starts with `prefix`, keyed by the rest of the name. */
export async function readAll(file: SafetensorsFile, prefix: string): Promise<Map<string, tf.Tensor>> {
  const out = new Map<string, tf.Tensor>();
  for (const key of file.keys()) if (key.startsWith(prefix)) out.set(key.slice(prefix.length), await file.readTensor(key));
  return out;
}

export async function scalar(file: SafetensorsFile, name: string): Promise<number> {
  return (await file.readFloat32(name))[0];
}

export interface Batch {
  inputIds: number[][];
  attentionMask: number[][];
  labels: number[][];
  images?: tf.Tensor4D;
  videos?: tf.Tensor5D;
  dispose(): void;
}

async function rows(file: SafetensorsFile, name: string): Promise<number[][]> {
  const t = await file.readTensor(name);
  const r = t.arraySync() as number[][];
  t.dispose();
  return r;
}

/** Batch "A" (image row + video row) or "B" (text row + image row) of batch.safetensors. */
export async function loadBatch(which: 'A' | 'B'): Promise<Batch> {
  const f = await openTraining('batch');
  try {
    const images = f.has(`${which}.pixel_values_images`) ? ((await f.readTensor(`${which}.pixel_values_images`)) as tf.Tensor4D) : undefined;
    const videos = f.has(`${which}.pixel_values_videos`) ? ((await f.readTensor(`${which}.pixel_values_videos`)) as tf.Tensor5D) : undefined;
    return {
      inputIds: await rows(f, `${which}.input_ids`),
      attentionMask: await rows(f, `${which}.attention_mask`),
      labels: await rows(f, `${which}.labels`),
      images,
      videos,
      dispose: () => tf.dispose([images, videos].filter((t) => t !== undefined) as tf.Tensor[]),
    };
  } finally {
    await f.close();
  }
}

/** The causal-LM loss of the model on a batch (a fresh scalar; everything else freed). */
export function batchLoss(model: VideoLlavaForConditionalGeneration, batch: Batch): tf.Scalar {
  const out = model.forward({
    inputIds: batch.inputIds,
    attentionMask: batch.attentionMask,
    pixelValuesImages: batch.images,
    pixelValuesVideos: batch.videos,
    labels: batch.labels,
  });
  out.logits.dispose();
  return out.loss!;
}

export function batchLogits(model: VideoLlavaForConditionalGeneration, batch: Batch): tf.Tensor3D {
  return model.forward({
    inputIds: batch.inputIds,
    attentionMask: batch.attentionMask,
    pixelValuesImages: batch.images,
    pixelValuesVideos: batch.videos,
  }).logits;
}

export interface GradDiff {
  name: string;
  abs: number;
  rel: number;
  /** max |expected| of the tensor, for scale. */
  scale: number;
}

/** Per-tensor max abs diff, max rel diff (|a−b| / (|b| + 1e-6)) and the expected tensor's max |value|. */
export function compare(name: string, actual: tf.Tensor, expected: tf.Tensor): GradDiff {
  const d = diff(actual, expected);
  const scale = tf.tidy(() => tf.max(tf.abs(expected)).dataSync()[0]);
  return { name, ...d, scale };
}

export function worst(diffs: GradDiff[]): GradDiff {
  return diffs.reduce((a, b) => (b.abs > a.abs ? b : a));
}
