/**
 * Held-out accuracy of a demo checkpoint: exact-match answers per question type, with greedy decoding,
 * through the same processor the CLI uses (frames given as decoded RGB images). Examples come from a
 * data-set seed other than the training one.
 *
 *   node tmp/examples/examples/train_demo/evaluate.js [--model assets/trained-model] [--seed 2] [--count 200]
 *        [--media image|video] [--via-files] [--json FILE] [--quantization nf4|fp4|int8] [--double-quant]
 * --via-files writes each video as an .mp4 (H.264, as the shipped sample) and passes the file, as the CLI does.
 * Prints a markdown table (the one in assets/trained-model/README.md) and the failures.
 */
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeVideo } from '../../src/data/media';
import type { RawImage } from '../../src/processing/image';
import { setBackend } from '../../src/backend';
import { QUESTION_TYPES, QuestionType, ShapesExample, makeExample, questionsFor } from '../../src/data/questions';
import { generate } from '../../src/generation/generate';
import { VideoLlavaForConditionalGeneration } from '../../src/models/video_llava/modeling';
import { VideoLlavaProcessor, disposeProcessorOutput } from '../../src/processing/processor';
import { promptFor } from '../../src/data/questions';
import { Rng, hashSeed } from '../../src/data/rng';
import { exampleOptions, readTrainConfig } from './common';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

export interface Tally {
  correct: number;
  total: number;
}

export interface Evaluation {
  byType: Record<QuestionType, Tally>;
  failures: Array<{ index: number; type: QuestionType; question: string; expected: string; got: string }>;
}

/**
 * Asks every answerable question of each example (phrasing drawn per example from `seed`), one batch of
 * left-padded prompts per example, and compares the greedy answers with the expected ones.
 */
export async function evaluate(
  model: VideoLlavaForConditionalGeneration,
  processor: VideoLlavaProcessor,
  list: ShapesExample[],
  seed: number,
  options: EvaluateOptions = {},
): Promise<Evaluation> {
  const byType = Object.fromEntries(QUESTION_TYPES.map((t) => [t, { correct: 0, total: 0 }])) as Record<QuestionType, Tally>;
  const failures: Evaluation['failures'] = [];
  for (const ex of list) {
    const qa = questionsFor(ex.facts, new Rng(hashSeed(seed, ex.index, 0x5a)));
    const prompts = qa.map((q) => promptFor(ex.facts.media, q.question));
    let media: { images: RawImage[] } | { videos: Array<string | { frames: RawImage[] }> };
    if (ex.facts.media === 'image') media = { images: qa.map(() => ex.frames[0]) };
    else if (options.videoDir) {
      // the CLI's path: an H.264 file (lossy, yuv420p) decoded again by ffmpeg
      const file = path.join(options.videoDir, `${seed}-${ex.index}.mp4`);
      await writeVideo(ex.frames, file);
      media = { videos: qa.map(() => file) };
    } else media = { videos: qa.map(() => ({ frames: ex.frames })) };
    const inputs = await processor.call(prompts, { ...media, padding: true });
    try {
      const result = await generate(model, inputs, { maxNewTokens: 12, eosTokenId: processor.tokenizer.eosTokenId, padTokenId: processor.tokenizer.padTokenId });
      qa.forEach((q, i) => {
        const got = processor.decode(result.newTokens[i], { skipSpecialTokens: true }).trim();
        byType[q.type].total++;
        if (got === q.answer) byType[q.type].correct++;
        else failures.push({ index: ex.index, type: q.type, question: q.question, expected: q.answer, got });
      });
    } finally {
      disposeProcessorOutput(inputs);
    }
  }
  return { byType, failures };
}

export interface EvaluateOptions {
  /** Write each video as an .mp4 into this folder and give the processor the file (default: decoded frames). */
  videoDir?: string;
}

export function table(e: Evaluation): string {
  const pct = (t: Tally) => (t.total === 0 ? 'n/a' : `${((100 * t.correct) / t.total).toFixed(1)}%`);
  const lines = ['| question type | correct | asked | accuracy |', '|---|---:|---:|---:|'];
  for (const t of QUESTION_TYPES) lines.push(`| ${t} | ${e.byType[t].correct} | ${e.byType[t].total} | ${pct(e.byType[t])} |`);
  const all = Object.values(e.byType).reduce((a, b) => ({ correct: a.correct + b.correct, total: a.total + b.total }), { correct: 0, total: 0 });
  lines.push(`| all | ${all.correct} | ${all.total} | ${pct(all)} |`);
  return lines.join('\n');
}

async function main(): Promise<void> {
  await setBackend();
  const dir = arg('model', 'assets/trained-model');
  const seed = Number(arg('seed', '2'));
  const count = Number(arg('count', '200'));
  const cfg = await readTrainConfig(arg('config', '') || undefined);
  if (seed === cfg.dataSeed) throw new Error(`--seed ${seed} is the training seed; pick another for a held-out set`);
  const processor = await VideoLlavaProcessor.fromPretrained(dir);
  const q = arg('quantization', '');
  if (q !== '' && q !== 'nf4' && q !== 'fp4' && q !== 'int8') throw new Error(`--quantization: expected nf4, fp4 or int8, found ${q}`);
  const quantization = q === '' ? undefined : q === 'int8' ? { bits: 8 as const } : { bits: 4 as const, type: q as 'nf4' | 'fp4', doubleQuant: process.argv.includes('--double-quant') };
  const model = await VideoLlavaForConditionalGeneration.fromPretrained(dir, { quantization });
  const t0 = Date.now();
  const media = arg('media', '');
  if (media !== '' && media !== 'image' && media !== 'video') throw new Error(`--media: expected image or video, found ${media}`);
  const list = Array.from({ length: count }, (_, i) => makeExample(seed, i, { ...exampleOptions(cfg), media: media || undefined }));
  const viaFiles = process.argv.includes('--via-files');
  const videoDir = viaFiles ? await fsp.mkdtemp(path.join(os.tmpdir(), 'video-llava-eval-')) : undefined;
  const e = await evaluate(model, processor, list, seed, { videoDir }).finally(() => videoDir && fsp.rm(videoDir, { recursive: true, force: true }));
  console.log(`held-out seed ${seed}, ${count} examples (${list.filter((x) => x.facts.media === 'video').length} videos), weights ${q || 'float32'}, ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
  console.log(table(e));
  const shown = e.failures.slice(0, 30);
  if (shown.length) console.log(`\nfailures (${e.failures.length}):\n` + shown.map((f) => `  #${f.index} ${f.type}: "${f.question}" expected "${f.expected}" got "${f.got}"`).join('\n'));
  const json = arg('json', '');
  if (json) await fsp.writeFile(json, JSON.stringify(e, null, 2) + '\n');
  model.dispose();
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e instanceof Error ? `${e.name}: ${e.message}` : e);
    process.exit(1);
  });
}
