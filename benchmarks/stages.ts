/**
 * The benchmark stages as tfjs work on a loaded model, and their timing loop: shared by the Node worker
 * (./tfjs_bench.ts) and the page (./web/bench.ts), so that both time the same calls on the same inputs.
 */
import * as tf from '@tensorflow/tfjs';
import { DynamicCache } from '../src/generation/cache';
import { featureLayers } from '../src/models/video_llava/config';
import { VideoLlavaForConditionalGeneration } from '../src/models/video_llava/modeling';
import { clipGrid } from '../src/models/clip/config';
import { INPUT_NAMES, benchInput } from './inputs';
import type { Probe, RunResult, StageSpec } from './protocol';

export interface Prepared {
  before?(): void; // untimed, before each iteration
  run(): tf.Tensor; // timed
  after?(): void; // untimed
  dispose(): void;
}

export function prepareStage(m: VideoLlavaForConditionalGeneration, stage: StageSpec): Prepared {
  const cfg = m.config;
  const v = cfg.vision_config;
  const t = cfg.text_config;
  switch (stage.kind) {
    case 'vision': {
      const shape: [number, number, number, number] = [stage.frames, v.num_channels, v.image_size, v.image_size];
      const pixels = tf.tensor(benchInput(INPUT_NAMES.pixels, shape), shape, 'float32') as tf.Tensor4D;
      const n = v.num_hidden_layers;
      const tower = m.model.video_tower;
      return {
        run: () => tower.call(pixels, { keep: (i) => i === n }).hiddenStates[n]!,
        dispose: () => pixels.dispose(),
      };
    }
    case 'projector': {
      const shape = [stage.frames, clipGrid(v).positions, v.hidden_size * featureLayers(cfg).length];
      const x = tf.tensor(benchInput(INPUT_NAMES.projector, shape), shape, 'float32');
      return { run: () => m.model.multi_modal_projector.call(x), dispose: () => x.dispose() };
    }
    case 'prefill': {
      let cache: DynamicCache | null = null;
      return {
        before: () => (cache = new DynamicCache()),
        run: () => m.forward({ inputIds: [stage.ids], cache: cache!, logitsToKeep: 1 }).logits,
        after: () => cache?.dispose(),
        dispose: () => cache?.dispose(),
      };
    }
    case 'decode': {
      const shape: [number, number, number, number] = [1, t.num_key_value_heads, stage.past, t.head_dim];
      const keys: tf.Tensor4D[] = [];
      const values: tf.Tensor4D[] = [];
      for (let l = 0; l < t.num_hidden_layers; l++) {
        keys.push(tf.tensor(benchInput(INPUT_NAMES.cacheKey(l), shape), shape, 'float32') as tf.Tensor4D);
        values.push(tf.tensor(benchInput(INPUT_NAMES.cacheValue(l), shape), shape, 'float32') as tf.Tensor4D);
      }
      let cache: DynamicCache | null = null;
      return {
        before: () => {
          cache = new DynamicCache(); // holds clones: shared data, no copy
          keys.forEach((k, l) => cache!.update(l, k, values[l]));
          cache.commit(stage.past);
        },
        run: () => m.forward({ inputIds: [stage.ids], cache: cache!, logitsToKeep: 1 }).logits,
        after: () => cache?.dispose(),
        dispose: () => {
          cache?.dispose();
          tf.dispose([...keys, ...values]);
        },
      };
    }
  }
}

function probe(data: Float32Array, shape: number[]): Probe {
  let absSum = 0;
  for (let i = 0; i < data.length; i++) absSum += Math.abs(data[i]);
  return { absSum, head: Array.from(data.subarray(0, 8)), shape: [...shape] };
}

/**
 * Runs a stage until `minMs` have passed (at least once) and reports the mean. The output is read back inside the
 * timed span: that is where a GPU backend's work ends (wasm and cpu run kernels synchronously); asynchronously,
 * because WebGPU in a page cannot read synchronously.
 */
export async function runPrepared(s: Prepared, minMs: number): Promise<RunResult> {
  let total = 0;
  let iters = 0;
  let last: Probe | null = null;
  while (iters === 0 || (total < minMs && iters < 1000)) {
    s.before?.();
    const t0 = performance.now();
    const y = s.run();
    const data = (await y.data()) as Float32Array;
    total += performance.now() - t0;
    iters++;
    if (total >= minMs || iters >= 1000) last = probe(data, y.shape);
    y.dispose();
    s.after?.();
  }
  return { ms: total / iters, iters, probe: last! };
}
