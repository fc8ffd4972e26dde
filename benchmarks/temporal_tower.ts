/**
 * The cost of LanguageBind's temporal attention in the video tower (issue 16): ms per 8-frame video at CLIP-L/14
 * widths (1024 wide, 16 heads, MLP 4096, 224 px, patch 14 → 257 tokens per frame), the same tower with and without
 * the temporal sub-block, on the same inputs, repeats alternating between the two so a busy machine hits both alike.
 *
 * Synthetic weights (src/weights/synthetic.ts formula, LanguageBind key names); `LAYERS` encoder layers are run
 * (default 2: the cost is per layer, so the with/without ratio is the full tower's; ms are also scaled to the 23
 * layers Video-LLaVA runs up to the feature layer −2). FLOPs are counted for the matmuls as the code issues them.
 *
 *   npx tsc -p tsconfig.json --outDir tmp/bench && node tmp/bench/benchmarks/temporal_tower.js [--layers N] [--repeats N]
 *
 * from the repository root (VIDEO_LLAVA_BACKEND=cpu|tensorflow for other backends; default wasm, with the native
 * matmul when nblas loads, VIDEO_LLAVA_NATIVE=0 for the stock kernels). Writes benchmarks/results/temporal_tower.json.
 * Not a test: nothing asserts.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { setBackend } from '../src/backend';
import { ClipVisionConfig } from '../src/models/clip/config';
import { ClipVisionModel } from '../src/models/clip/modeling';
import { nativeMatmulStatus } from '../src/native';
import { syntheticWeight } from '../src/weights/synthetic';

const CLIP_L: ClipVisionConfig = {
  hidden_size: 1024,
  intermediate_size: 4096,
  num_hidden_layers: 23,
  num_attention_heads: 16,
  num_channels: 3,
  image_size: 224,
  patch_size: 14,
  hidden_act: 'gelu',
  layer_norm_eps: 1e-5,
};
const FRAMES = 8;
const FEATURE_LAYERS = 23; // hidden_states[-2] of 24 layers

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function tower(layers: number, temporal: boolean): ClipVisionModel {
  const model = new ClipVisionModel({ ...CLIP_L, num_hidden_layers: layers }, temporal ? FRAMES : 0);
  for (const [name, p] of model.namedParameters()) {
    const key = `vision_model.${name}`;
    p.set(tf.tensor(syntheticWeight(key, [...p.shape]), [...p.shape], 'float32'), key);
  }
  return model;
}

/** Matmul FLOPs of one 8-frame video through `layers` layers (patch embedding included). */
function flops(layers: number, temporal: boolean): number {
  const D = CLIP_L.hidden_size;
  const n = (CLIP_L.image_size / CLIP_L.patch_size) ** 2 + 1;
  const tokens = FRAMES * n;
  const spatial = 2 * tokens * (4 * D * D + 2 * D * CLIP_L.intermediate_size) + 2 * 2 * FRAMES * n * n * D;
  const time = 2 * tokens * 4 * D * D + 2 * 2 * n * FRAMES * FRAMES * D;
  const patch = 2 * FRAMES * (n - 1) * 3 * CLIP_L.patch_size ** 2 * D;
  return patch + layers * (spatial + (temporal ? time : 0));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main(): Promise<void> {
  const backend = await setBackend();
  const layers = arg('layers', 2);
  const repeats = arg('repeats', 3);
  const towers = { without: tower(layers, false), with: tower(layers, true) };
  const pixels = tf.tidy(() => tf.mul(tf.tensor(syntheticWeight('pixels', [FRAMES, 3, 224, 224]), [FRAMES, 3, 224, 224]), 64)) as tf.Tensor4D;
  const run = (t: ClipVisionModel) => {
    const start = performance.now();
    const { hiddenStates } = t.call(pixels, { numLayers: layers, keep: (i) => i === layers, framesPerVideo: FRAMES });
    hiddenStates[layers]!.dataSync();
    const ms = performance.now() - start;
    tf.dispose(hiddenStates.filter((h): h is tf.Tensor3D => h !== null));
    return ms;
  };
  run(towers.without); // warm-up (kernel setup, weight layouts)
  run(towers.with);
  const times: Record<'with' | 'without', number[]> = { with: [], without: [] };
  for (let r = 0; r < repeats; r++) {
    times.without.push(run(towers.without));
    times.with.push(run(towers.with));
  }
  const row = (k: 'with' | 'without') => {
    const ms = median(times[k]);
    const perLayer = ms / layers; // the patch embedding is < 0.1% of a layer
    return { ms, msPerLayer: perLayer, msFeatureTower: perLayer * FEATURE_LAYERS, gflops: flops(layers, k === 'with') / 1e9, gflopsPerSec: flops(layers, k === 'with') / ms / 1e6, repeats: times[k] };
  };
  const result = {
    backend,
    matmul: nativeMatmulStatus().enabled ? `native BLAS (${nativeMatmulStatus().threads} threads)` : backend,
    layers,
    frames: FRAMES,
    without: row('without'),
    with: row('with'),
    added: median(times.with) / median(times.without) - 1,
    addedFlops: flops(layers, true) / flops(layers, false) - 1,
    date: new Date().toISOString(),
  };
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  console.log(`video tower, CLIP-L/14, one ${FRAMES}-frame video, ${layers} layers, ${result.backend} (matmul: ${result.matmul}), median of ${repeats}`);
  for (const k of ['without', 'with'] as const) {
    const r = result[k];
    console.log(`  ${k.padEnd(7)} temporal: ${r.ms.toFixed(0)} ms (${r.msPerLayer.toFixed(0)} ms/layer → ${(r.msFeatureTower / 1000).toFixed(2)} s for 23 layers), ${r.gflopsPerSec.toFixed(1)} GFLOP/s`);
  }
  console.log(`  temporal attention adds ${pct(result.added)} time (${pct(result.addedFlops)} matmul FLOPs)`);
  const out = path.join(process.cwd(), 'benchmarks', 'results');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'temporal_tower.json'), JSON.stringify(result, null, 1) + '\n');
  towers.with.dispose();
  towers.without.dispose();
  pixels.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
