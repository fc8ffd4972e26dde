/**
 * Decode-step benchmark: time of one decoder step (1 new token, attending to a cache of T positions,
 * logits for that token) at T = 16, 128, 512, 1024, with the concatenating DynamicCache and the
 * BlockKVCache that generate() uses; plus the cost of the cache append alone (one layer's update).
 *
 * Models (random weights; the cache is filled with random keys/values, no prefill forward):
 *   synthetic  hidden 512, 8 heads of 64, 4 layers, vocab 4000
 *   attn-7b    the 7B model's attention (32 heads of 128, hidden 4096) in 2 layers, small MLP and vocab
 *   faithful   the fixture model (hidden 64, 2 layers) Not a test: run it by hand, e.g.
 *
 *   npx tsc -p tsconfig.json --outDir tmp/bench && node tmp/bench/benchmarks/decode_step.js
 *
 * from the repository root (VIDEO_LLAVA_BACKEND=cpu for the cpu backend; default wasm). Results are also written to
 * benchmarks/results/decode_step.json.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { setBackend } from '../src/backend';
import { BlockKVCache, DynamicCache, KVCache } from '../src/generation/cache';
import { parseVideoLlavaConfig } from '../src/models/video_llava/config';
import { VideoLlavaForConditionalGeneration } from '../src/models/video_llava/modeling';

const LENGTHS = [16, 128, 512, 1024];
const STEPS = 32; // decode steps timed per length (median reported)

/** Small everywhere: step time is mostly the weight matmuls. */
const SYNTHETIC = {
  text_config: {
    hidden_size: 512,
    intermediate_size: 1376,
    num_hidden_layers: 4,
    num_attention_heads: 8,
    num_key_value_heads: 8,
    vocab_size: 4000,
    max_position_embeddings: 4096,
  },
  vision_config: { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, image_size: 8, patch_size: 4 },
};

/** Video-LLaVA-7B's attention shape (32 heads of 128) in 2 layers with a small MLP and vocabulary: the cache
 * is as large per layer as in the real model, so the cost of copying it shows. */
const ATTENTION_7B = {
  text_config: { ...SYNTHETIC.text_config, hidden_size: 4096, intermediate_size: 256, num_hidden_layers: 2, num_attention_heads: 32, num_key_value_heads: 32, vocab_size: 512 },
  vision_config: SYNTHETIC.vision_config,
};

function syntheticModel(config: object): VideoLlavaForConditionalGeneration {
  const model = new VideoLlavaForConditionalGeneration(parseVideoLlavaConfig(config as Record<string, unknown>));
  model.namedParameters().forEach(([name, p], i) => {
    const init = name.endsWith('norm.weight') ? tf.ones([...p.shape]) : tf.randomNormal([...p.shape], 0, 0.02, 'float32', i);
    p.set(init, name);
  });
  return model;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

interface Stat {
  min: number;
  median: number;
}

const stat = (xs: number[]): Stat => ({ min: Math.min(...xs), median: median(xs) });

/** A cache holding T positions of random keys/values in every layer (their values do not matter for timing). */
function prefilled(model: VideoLlavaForConditionalGeneration, cache: KVCache, T: number): KVCache {
  const text = model.config.text_config;
  for (let layer = 0; layer < text.num_hidden_layers; layer++) {
    const kv = tf.randomNormal([1, text.num_key_value_heads, T, text.head_dim], 0, 1, 'float32', layer) as tf.Tensor4D;
    cache.update(layer, kv, kv);
    kv.dispose();
  }
  cache.commit(T);
  return cache;
}

/** One decode step: a single token (embedding given) → logits on the host; returns milliseconds. */
function timeStep(model: VideoLlavaForConditionalGeneration, cache: KVCache, x: tf.Tensor3D): number {
  const t0 = performance.now();
  const { lastHiddenState } = model.model.language_model.call({ inputsEmbeds: x, cache });
  const logits = model.lm_head.call(lastHiddenState) as tf.Tensor;
  logits.dataSync();
  const ms = performance.now() - t0;
  tf.dispose([lastHiddenState, logits]);
  return ms;
}

/** One layer's update of one position onto the cache; returns milliseconds. */
function timeAppend(cache: KVCache, step: tf.Tensor4D): number {
  const t0 = performance.now();
  const blocks = cache.update(0, step, step);
  blocks.keys[blocks.keys.length - 1].dataSync(); // wait for the copy
  const ms = performance.now() - t0;
  cache.commit(1);
  return ms;
}

const CACHES: Array<[string, () => KVCache]> = [
  ['DynamicCache', () => new DynamicCache()],
  ['BlockKVCache(64)', () => new BlockKVCache(64)],
];

type Row = { model: string; cache: string; T: number; stepMs: Stat; appendMs: Stat };

/** The two caches are measured in alternation, so that load from other processes hits both alike. */
function measure(name: string, model: VideoLlavaForConditionalGeneration, T: number): Row[] {
  const text = model.config.text_config;
  const decoders = CACHES.map(([, make]) => prefilled(model, make(), T));
  const appenders = CACHES.map(([, make]) => {
    const c = make();
    const prefix = tf.randomNormal([1, text.num_key_value_heads, T, text.head_dim]) as tf.Tensor4D;
    c.update(0, prefix, prefix);
    c.commit(T);
    prefix.dispose();
    return c;
  });
  const x = tf.randomNormal([1, 1, text.hidden_size], 0, 1, 'float32', 2) as tf.Tensor3D;
  const kv = tf.randomNormal([1, text.num_key_value_heads, 1, text.head_dim]) as tf.Tensor4D;
  const steps: number[][] = CACHES.map(() => []);
  const appends: number[][] = CACHES.map(() => []);
  for (let s = 0; s < STEPS; s++) {
    decoders.forEach((c, i) => steps[i].push(timeStep(model, c, x)));
    appenders.forEach((c, i) => appends[i].push(timeAppend(c, kv)));
  }
  tf.dispose([x, kv]);
  [...decoders, ...appenders].forEach((c) => c.dispose());
  return CACHES.map(([cache], i) => ({ model: name, cache, T, stepMs: stat(steps[i]), appendMs: stat(appends[i]) }));
}

function run(name: string, model: VideoLlavaForConditionalGeneration): Row[] {
  measure(name, model, 16); // warm-up: first calls compile and allocate
  const rows: Row[] = [];
  for (const T of LENGTHS) {
    const before = tf.memory().numTensors;
    for (const r of measure(name, model, T)) {
      rows.push(r);
      const f = (s: Stat, d: number) => `${s.min.toFixed(d).padStart(7)} / ${s.median.toFixed(d).padStart(7)}`;
      console.log(`${name.padEnd(10)} ${r.cache.padEnd(17)} T=${String(T).padStart(4)}  step ${f(r.stepMs, 2)} ms   append ${f(r.appendMs, 3)} ms`);
    }
    if (tf.memory().numTensors !== before) throw new Error('benchmark leaked tensors');
  }
  return rows;
}

async function main(): Promise<void> {
  const backend = await setBackend();
  console.log(`backend ${backend}; min / median of ${STEPS} steps; append = one layer's cache update alone`);
  const rows: Row[] = [];
  for (const [name, config] of [['synthetic', SYNTHETIC], ['attn-7b', ATTENTION_7B]] as const) {
    const model = syntheticModel(config);
    rows.push(...run(name, model));
    model.dispose();
  }
  const faithful = await VideoLlavaForConditionalGeneration.fromPretrained(path.join(process.cwd(), 'test', 'fixtures', 'models', 'faithful'));
  rows.push(...run('faithful', faithful));
  faithful.dispose();
  const out = path.join(process.cwd(), 'benchmarks', 'results');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'decode_step.json'), JSON.stringify({ backend, steps: STEPS, rows }, null, 1) + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
