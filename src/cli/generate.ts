/**
 * `video-llava generate`: prompt + images/videos in, streamed answer out, with a one-line timing summary.
 */
import * as fs from 'fs';
import * as tf from '@tensorflow/tfjs';
import { setBackend } from '../backend';
import { GenerateOptions, generate, loadGenerationConfig } from '../generation/generate';
import { VideoLlavaForConditionalGeneration } from '../models/video_llava/modeling';
import { VideoLlavaProcessor } from '../processing/processor';
import { buildPrompt } from '../processing/prompt';
import { SAMPLING_OPTIONS, WEIGHT_HELP, WEIGHT_OPTIONS, intOption, parse, required, samplingOptions, weightOptions } from './args';
import { downloadProgress, loadProgressBar } from './progress';
import { resolveModel } from '../hub';
import { nativeMatmulNotice, nativeMatmulStatus } from '../native';
import { addonDescription, addonNotice } from '../native/addon';
import { formatBytes, weightMemoryOf } from '../models/video_llava/memory';
import { loadOriginalVideoLlava, originalCheckpointDir } from '../models/video_llava/original';
import { originalProcessor } from '../processing/original_processor';
import { InputError } from '../errors';

/** --video-tower, --image-tower, --tower-weights (original-layout checkpoints). */
function towerOptions(args: Record<string, unknown>): { videoTower?: string; imageTower?: string; towerWeights?: 'repos' | 'embedded' } {
  const weights = args['tower-weights'];
  if (weights !== undefined && weights !== 'repos' && weights !== 'embedded') throw new InputError('--tower-weights', `expected repos or embedded, found "${String(weights)}"`);
  return { videoTower: args['video-tower'] as string | undefined, imageTower: args['image-tower'] as string | undefined, towerWeights: weights };
}

export const GENERATE_HELP = `video-llava generate --model DIR [--video FILE]... [--image FILE]... --prompt TEXT [options]

Answers a question about videos and images, streaming the answer as it is produced.

  --model DIR|ID          a Video-LLaVA checkpoint directory (config.json, safetensors, tokenizer and
                          processor files) or a Hub id such as LanguageBind/Video-LLaVA-7B-hf: ids are read
                          from the Hugging Face cache shared with Python (HF_HOME, HF_HUB_CACHE) and
                          missing files are downloaded (HF_TOKEN, HF_ENDPOINT, HF_HUB_OFFLINE apply)
  --revision REV          branch, tag or commit of a Hub id (default main)
  --offline               never touch the network (same as HF_HUB_OFFLINE=1)
  --video FILE            a video (mp4, webm, avi, mkv, gif); repeat for several
  --image FILE            an image (jpeg, png, webp, gif); repeat for several
  --prompt TEXT           the question. Without <image>/<video> placeholders it is wrapped in the chat
                          template ("USER: <video>\\nTEXT ASSISTANT:"); with them it is used as is
  --max-new-tokens N      default 60
  --num-frames N          frames sampled per video (default 8, what the model was trained with)
  --prefill-chunk N       run the prompt through the decoder N positions at a time (same answer, less
                          activation memory: for long video prompts next to a big model in the wasm heap)
  --do-sample             sample instead of greedy decoding; with --temperature, --top-k, --top-p, --seed
  --repetition-penalty X
${WEIGHT_HELP}
  --backend NAME          wasm (default), cpu, or tensorflow (needs @tensorflow/tfjs-node installed)
  --no-native             keep the backend's own matMul even when native OpenBLAS (optional nblas) is available
                          (also VIDEO_LLAVA_NATIVE=0; threads: VIDEO_LLAVA_BLAS_THREADS)
  --json                  print one JSON object (answer, ids, timings) instead of streaming text
  --video-tower DIR|ID    original-layout checkpoints (LanguageBind/Video-LLaVA-7B): the LanguageBind video
  --image-tower DIR|ID    and image towers (default: the config's mm_video_tower / mm_image_tower, a directory
                          of that name next to the model first, else the Hub id through the cache)
  --tower-weights repos|embedded   original layout: tower weights from the tower repositories (default, as the
                          original builder.py) or the copies inside the checkpoint

Example (the shipped trained demo model; it answers "a purple cross moves left."):
  video-llava generate --model assets/trained-model --video assets/sample-shapes.mp4 --prompt "What is happening in this video?"
`;

const OPTIONS = {
  model: { type: 'string' },
  video: { type: 'string', multiple: true },
  image: { type: 'string', multiple: true },
  prompt: { type: 'string' },
  'max-new-tokens': { type: 'string' },
  'num-frames': { type: 'string' },
  'prefill-chunk': { type: 'string' },
  ...SAMPLING_OPTIONS,
  ...WEIGHT_OPTIONS,
  backend: { type: 'string' },
  'no-native': { type: 'boolean' },
  revision: { type: 'string' },
  offline: { type: 'boolean' },
  json: { type: 'boolean' },
  'video-tower': { type: 'string' },
  'image-tower': { type: 'string' },
  'tower-weights': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export { buildPrompt };

const rate = (tokens: number, ms: number) => (ms > 0 ? (tokens / ms) * 1000 : 0);

export async function generateCommand(argv: string[], log: (line: string) => void): Promise<void> {
  const args = parse(argv, OPTIONS);
  if (args.help) return log(GENERATE_HELP);
  const json = args.json === true;
  const modelArg = required(args, 'model');
  const hub = { revision: args.revision as string | undefined, offline: args.offline === true ? true : undefined };
  const prompt = required(args, 'prompt');
  const images = (args.image as string[] | undefined) ?? [];
  const videos = (args.video as string[] | undefined) ?? [];
  const backend = await setBackend(args.backend as string | undefined, { native: args['no-native'] ? false : undefined });
  const notice = nativeMatmulNotice();
  if (notice && !json) process.stderr.write(`${notice}\n`);

  const t0 = Date.now();
  const bar = loadProgressBar();
  const onProgress = json ? undefined : bar.update;
  // The original layout (LanguageBind/Video-LLaVA-7B + LanguageBind towers) or this package's HF layout.
  const original = await originalCheckpointDir(modelArg, { ...hub, onDownloadProgress: json ? undefined : downloadProgress() });
  let modelDir: string;
  let processor: VideoLlavaProcessor;
  let model: VideoLlavaForConditionalGeneration;
  if (original) {
    modelDir = original;
    model = await loadOriginalVideoLlava(original, { ...hub, ...towerOptions(args), onProgress });
    const c = model.config;
    const settings = { imageTokenId: c.image_token_index, videoTokenId: c.video_token_index, patchSize: c.vision_config.patch_size, imageSize: c.vision_config.image_size, strategy: c.vision_feature_select_strategy };
    try {
      processor = originalProcessor(original, settings);
    } catch (e) {
      model.dispose();
      throw e;
    }
  } else {
    modelDir = await resolveModel(modelArg, { ...hub, onProgress: json ? undefined : downloadProgress() });
    processor = await VideoLlavaProcessor.fromPretrained(modelDir);
    model = await VideoLlavaForConditionalGeneration.fromPretrained(modelDir, { ...weightOptions(args), onProgress });
  }
  if (!json) bar.done();
  const loadMs = Date.now() - t0;
  const weights = describeWeights(model);
  const addonLine = weights.stored > 0 ? addonNotice() : null;
  if (addonLine && !json) process.stderr.write(`${addonLine}\n`);

  const text = buildPrompt(processor, prompt, images.length, videos.length);
  const inputs = await processor.call(text, { images, videos, numFrames: intOption(args, 'num-frames', 8, 1) });
  const options: GenerateOptions = {
    generationConfig: await loadGenerationConfig(modelDir),
    maxNewTokens: intOption(args, 'max-new-tokens', 60),
    prefillChunkSize: args['prefill-chunk'] === undefined ? undefined : intOption(args, 'prefill-chunk', 0, 1),
    ...samplingOptions(args),
    tokenizer: processor.tokenizer,
    onToken: json ? undefined : (e) => process.stdout.write(e.text[0]),
  };
  try {
    const result = await generate(model, inputs, options);
    const t = result.timings;
    const answer = processor.decode(result.newTokens[0], { skipSpecialTokens: true });
    const summary = {
      loadMs,
      visionMs: Math.round(t.visionMs),
      timeToFirstTokenMs: Math.round(t.visionMs + t.prefillMs),
      prefillTokensPerSec: rate(t.prefillTokens, t.prefillMs),
      decodeTokensPerSec: rate(t.decodeTokens, t.decodeMs),
      promptTokens: inputs.inputIds[0].length,
      newTokens: result.newTokens[0].length,
      finishReason: result.finishReason[0],
      backend,
      matmul: matmulPath(tf.getBackend()),
      weights: weights.text,
      peakRssBytes: peakRss(),
    };
    if (json) {
      log(JSON.stringify({ answer, prompt: text.length > 2000 ? undefined : text, newTokenIds: result.newTokens[0], frameIndices: inputs.frameIndices, seed: result.seed, ...summary }));
    } else {
      process.stdout.write('\n');
      process.stderr.write(
        `load ${(loadMs / 1000).toFixed(2)} s · vision ${summary.visionMs} ms · prefill ${summary.promptTokens} tok at ${summary.prefillTokensPerSec.toFixed(1)} tok/s · ` +
          `decode ${summary.newTokens} tok at ${summary.decodeTokensPerSec.toFixed(1)} tok/s · ${backend} (matmul: ${summary.matmul}) · ` +
          `weights ${weights.text} · ${summary.finishReason}\n`,
      );
    }
  } finally {
    inputs.pixelValuesImages?.dispose();
    inputs.pixelValuesVideos?.dispose();
    model.dispose();
  }
}

/** Which matrix-multiply path ran: native BLAS when its kernels took calls, else the backend's own. */
function matmulPath(backend: string): string {
  const status = nativeMatmulStatus();
  return status.enabled && status.calls.native > 0 ? `native BLAS (${status.threads} threads)` : backend;
}

/** "13.5 GiB bfloat16 outside the heap (amx, 2 threads) + 0.1 GiB float32" */
function describeWeights(model: VideoLlavaForConditionalGeneration): { text: string; stored: number } {
  const m = weightMemoryOf(model);
  const parts = Object.entries(m.storedByFormat).map(([format, bytes]) => `${formatBytes(bytes)} ${format} (${m.countByFormat[format]} weights)`);
  const kernels = parts.length > 0 ? ` outside the heap (${addonDescription() ?? 'no native kernels'})` : '';
  return { text: [...(parts.length ? [parts.join(' + ') + kernels] : []), `${formatBytes(m.heapBytes)} float32`].join(' + '), stored: m.storedBytes };
}

/** The process's peak resident memory (VmHWM on Linux, else the current RSS). */
function peakRss(): number {
  try {
    const match = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (match) return Number(match[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.memoryUsage().rss;
}
