/**
 * This package in a web page beside Node, on the same machine in one run (`npm run bench:browser`):
 *
 *   demo      the shipped trained model answering the sample question: Node (the CLI's code path, stock wasm) and
 *             the demo page on each backend, cold (fresh browser profile: model over HTTP) and warm (reload: model
 *             from Cache Storage). "first answer" = from opening the page (navigation start) to the full answer.
 *   slice7b   the real 7B widths (CLIP-L/14 × 2 layers per tower, one Llama-2-7B layer, vocab 32064; 2.05 GiB of
 *             float32, benchmarks/README.md): load time and the stages of ./stages.ts (vision tower 1 frame, prefill
 *             32 tokens, one decode step after 16 cached positions), the same calls and inputs in Node and in the page.
 *
 * Headless Debian Chromium (test/browser/chromium.ts): wasm (SIMD; threads as tfjs-backend-wasm starts them), WebGL
 * and WebGPU on SwiftShader (the CPU: this machine has no GPU). Writes benchmarks/results/browser.{json,md}.
 *
 *   node .bench-build/benchmarks/browser.js [--configs demo,slice7b] [--backends wasm,webgl,webgpu] [--repeats 3]
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseArgs } from 'util';
import * as tf from '@tensorflow/tfjs';
import { setBackend } from '../src/backend';
import { startWebServer } from '../src/cli/web_server';
import { GenerateTimings, generate, loadGenerationConfig } from '../src/generation/generate';
import { VideoLlavaForConditionalGeneration } from '../src/models/video_llava/modeling';
import { VideoLlavaProcessor, disposeProcessorOutput } from '../src/processing/processor';
import { buildPrompt } from '../src/processing/prompt';
import { findChromium, launchChromium } from '../test/browser/chromium';
import { writeSyntheticCheckpoint } from './checkpoint';
import { loadBenchConfigs, repoRoot } from './configs';
import { textIds } from './inputs';
import type { PageBenchRequest, PageBenchResult, StageSpec } from './protocol';
import { prepareStage, runPrepared } from './stages';
import { summarize } from './stats';

const ROOT = repoRoot();
const DEMO_MODEL = path.join(ROOT, 'assets', 'trained-model');
const SAMPLE = path.join(ROOT, 'assets', 'sample-shapes.mp4');
const QUESTION = 'What is happening in this video?';

interface DemoRow {
  where: string;
  backend: string;
  answer: string;
  loadMs: number;
  firstAnswerMs: number;
  warmFirstAnswerMs?: number;
  visionMs: number;
  prefillTokPerS: number;
  decodeTokPerS: number;
}

interface SliceRow {
  where: string;
  backend: string;
  loadMs: number;
  stages: Record<string, number>; // median ms
  probes: Record<string, number>;
  error?: string;
}

const rate = (n: number, ms: number): number => (ms > 0 ? (n / ms) * 1000 : 0);
const median = (xs: number[]): number => summarize(xs).median;

async function nodeDemo(): Promise<DemoRow> {
  const t0 = performance.now();
  const processor = await VideoLlavaProcessor.fromPretrained(DEMO_MODEL);
  const model = await VideoLlavaForConditionalGeneration.fromPretrained(DEMO_MODEL);
  const loadMs = performance.now() - t0;
  const inputs = await processor.call(buildPrompt(processor, QUESTION, 0, 1), { videos: [SAMPLE] });
  const r = await generate(model, inputs, { generationConfig: await loadGenerationConfig(DEMO_MODEL), maxNewTokens: 60, tokenizer: processor.tokenizer });
  const done = performance.now() - t0;
  disposeProcessorOutput(inputs);
  model.dispose();
  const t = r.timings;
  return {
    where: 'Node',
    backend: `${tf.getBackend()} (stock)`,
    answer: processor.decode(r.newTokens[0], { skipSpecialTokens: true }),
    loadMs,
    firstAnswerMs: done,
    visionMs: t.visionMs,
    prefillTokPerS: rate(t.prefillTokens, t.prefillMs),
    decodeTokPerS: rate(t.decodeTokens, t.decodeMs),
  };
}

/** The demo page's answer (examples/web/app.ts). */
type PageAnswer = GenerateTimings & { answer: string; doneAt: number };

async function pageDemo(chromium: string, url: string, backend: string): Promise<DemoRow> {
  const launched = await launchChromium(chromium);
  try {
    const page = await launched.browser.newPage();
    const open = async (): Promise<{ a: PageAnswer; loadMs: number; backend: string }> => {
      await page.goto(`${url}?backend=${backend}`);
      await page.waitForFunction('window.videoLlava !== undefined');
      return page.evaluate(async () => {
        const v = (globalThis as unknown as { videoLlava: { firstAnswer: Promise<PageAnswer>; ready: Promise<{ loadMs: number; backendDescription: string }> } }).videoLlava;
        const a = await v.firstAnswer;
        const l = await v.ready;
        return { a, loadMs: l.loadMs, backend: l.backendDescription };
      });
    };
    const cold = await open();
    const warm = await open();
    const a = warm.a;
    return {
      where: 'page',
      backend: cold.backend,
      answer: a.answer,
      loadMs: cold.loadMs,
      firstAnswerMs: cold.a.doneAt,
      warmFirstAnswerMs: warm.a.doneAt,
      visionMs: a.visionMs,
      prefillTokPerS: rate(a.prefillTokens, a.prefillMs),
      decodeTokPerS: rate(a.decodeTokens, a.decodeMs),
    };
  } finally {
    await launched.close();
  }
}

function sliceStages(cfgTextIds: (n: number, offset?: number) => number[]): Array<{ key: string; stage: StageSpec }> {
  return [
    { key: 'vision (1 frame)', stage: { kind: 'vision', frames: 1 } },
    { key: 'prefill (32 tokens)', stage: { kind: 'prefill', ids: cfgTextIds(32) } },
    { key: 'decode (cache 16)', stage: { kind: 'decode', past: 16, ids: cfgTextIds(1, 32) } },
  ];
}

async function nodeSlice(dir: string, stages: Array<{ key: string; stage: StageSpec }>, repeats: number, minMs: number): Promise<SliceRow> {
  const t0 = performance.now();
  const model = await VideoLlavaForConditionalGeneration.fromPretrained(dir);
  const loadMs = performance.now() - t0;
  const out: SliceRow = { where: 'Node', backend: `${tf.getBackend()} (stock)`, loadMs, stages: {}, probes: {} };
  try {
    for (const { key, stage } of stages) {
      const prepared = prepareStage(model, stage);
      await runPrepared(prepared, 0);
      const times: number[] = [];
      for (let i = 0; i < repeats; i++) {
        const r = await runPrepared(prepared, minMs);
        times.push(r.ms);
        out.probes[key] = r.probe.absSum;
      }
      prepared.dispose();
      out.stages[key] = median(times);
    }
  } finally {
    model.dispose();
  }
  return out;
}

async function pageSlice(chromium: string, url: string, req: PageBenchRequest, timeoutMs: number): Promise<SliceRow> {
  const launched = await launchChromium(chromium, timeoutMs + 60_000);
  try {
    const page = await launched.browser.newPage();
    page.setDefaultTimeout(timeoutMs);
    await page.goto(url);
    await page.waitForFunction('window.bench !== undefined');
    const r = await Promise.race([
      page.evaluate((q) => (globalThis as unknown as { bench: { run(r: PageBenchRequest): Promise<PageBenchResult> } }).bench.run(q), req),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`did not finish in ${timeoutMs / 1000} s`)), timeoutMs)),
    ]);
    return { where: 'page', backend: r.backend, loadMs: r.loadMs, stages: Object.fromEntries(Object.entries(r.stages).map(([k, v]) => [k, median(v)])), probes: r.probes };
  } catch (err) {
    return { where: 'page', backend: req.backend, loadMs: NaN, stages: {}, probes: {}, error: (err as Error).message.split('\n')[0] };
  } finally {
    await launched.close();
  }
}

async function buildBenchPage(dir: string): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const esbuild = require('esbuild') as typeof import('esbuild');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { browserPlatform } = require(path.join(ROOT, 'scripts', 'build-web.js')) as { browserPlatform: import('esbuild').Plugin };
  await esbuild.build({
    entryPoints: [path.join(ROOT, 'benchmarks', 'web', 'bench.ts')],
    outfile: path.join(dir, 'bench.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    plugins: [browserPlatform],
    logLevel: 'warning',
  });
  fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html><meta charset="utf-8"><script type="module" src="bench.js"></script>\n');
}

const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(x >= 100 ? 0 : 1) : '–');

function markdown(meta: Record<string, unknown>, demo: DemoRow[], slice: SliceRow[]): string {
  const lines = [`# Browser benchmark (${meta.date})`, '', `${meta.machine}; ${meta.chromium}.`, ''];
  if (demo.length > 0) {
    lines.push('## Demo model, sample question', '', '| where | backend | answer | load ms | first answer ms (cold) | first answer ms (warm cache) | vision ms | prefill tok/s | decode tok/s |', '|---|---|---|---|---|---|---|---|---|');
    for (const d of demo) {
      lines.push(`| ${d.where} | ${d.backend} | ${d.answer} | ${f1(d.loadMs)} | ${f1(d.firstAnswerMs)} | ${d.warmFirstAnswerMs === undefined ? '' : f1(d.warmFirstAnswerMs)} | ${f1(d.visionMs)} | ${f1(d.prefillTokPerS)} | ${f1(d.decodeTokPerS)} |`);
    }
    lines.push('');
  }
  if (slice.length > 0) {
    const keys = Object.keys(slice.find((s) => !s.error)?.stages ?? {});
    lines.push('## slice7b (real 7B widths), median ms', '', `| where | backend | load ms | ${keys.join(' | ')} |`, `|---|---|---|${keys.map(() => '---').join('|')}|`);
    for (const s of slice) {
      const cells = s.error ? keys.map((_, i) => (i === 0 ? s.error! : '')) : keys.map((k) => f1(s.stages[k]));
      lines.push(`| ${s.where} | ${s.backend} | ${f1(s.loadMs)} | ${cells.join(' | ')} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      configs: { type: 'string', default: 'demo,slice7b' },
      backends: { type: 'string', default: 'wasm,webgl,webgpu' },
      repeats: { type: 'string', default: '3' },
      'min-ms': { type: 'string', default: '50' },
      'timeout-s': { type: 'string', default: '900' },
      out: { type: 'string', default: path.join(ROOT, 'benchmarks', 'results') },
    },
  });
  const configs = values.configs!.split(',');
  const backends = values.backends!.split(',');
  const repeats = Number(values.repeats);
  const minMs = Number(values['min-ms']);
  const chromium = findChromium();
  if (!chromium) throw new Error('no Chromium: apt-get install chromium (or set CHROMIUM_PATH)');
  process.env.VIDEO_LLAVA_NATIVE = '0'; // Node on the stock wasm kernels, as the page
  await setBackend('wasm');
  execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'build-web.js')], { stdio: 'inherit' });

  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'video-llava-bench-browser-'));
  const benchDir = path.join(tmp, 'bench');
  fs.mkdirSync(benchDir);
  await buildBenchPage(benchDir);
  const mounts = { '/': path.join(ROOT, 'dist', 'web'), '/assets/': path.join(ROOT, 'assets'), '/bench/': benchDir, '/models/': tmp };
  const server = await startWebServer({ mounts });
  const chromiumVersion = execFileSync(chromium, ['--version'], { encoding: 'utf8' }).trim();
  const meta = { date: new Date().toISOString().slice(0, 10), machine: `${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length}, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB`, chromium: chromiumVersion };
  const demo: DemoRow[] = [];
  const slice: SliceRow[] = [];
  try {
    if (configs.includes('demo')) {
      demo.push(await nodeDemo());
      for (const backend of backends) {
        demo.push(await pageDemo(chromium, server.url, backend));
        console.log(JSON.stringify(demo[demo.length - 1]));
      }
    }
    if (configs.includes('slice7b')) {
      const cfg = loadBenchConfigs(ROOT).find((c) => c.name === 'slice7b')!;
      const written = writeSyntheticCheckpoint(path.join(tmp, 'slice7b'), cfg.configText, cfg.config);
      console.log(`slice7b: ${(written.bytes / 1024 ** 3).toFixed(2)} GiB written in ${(written.ms / 1000).toFixed(1)} s`);
      const stages = sliceStages((n, offset) => textIds(cfg.config, n, offset));
      slice.push(await nodeSlice(written.dir, stages, repeats, minMs));
      console.log(JSON.stringify(slice[slice.length - 1]));
      for (const backend of backends) {
        const req: PageBenchRequest = { backend, model: '/models/slice7b/', stages, repeats, minMs };
        slice.push(await pageSlice(chromium, `${server.url}bench/`, req, Number(values['timeout-s']) * 1000));
        console.log(JSON.stringify(slice[slice.length - 1]));
      }
    }
  } finally {
    await server.close();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  fs.mkdirSync(values.out!, { recursive: true });
  fs.writeFileSync(path.join(values.out!, 'browser.json'), JSON.stringify({ meta, demo, slice }, null, 2));
  const md = markdown(meta, demo, slice);
  fs.writeFileSync(path.join(values.out!, 'browser.md'), md);
  console.log(`\n${md}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
