/**
 * The full-size check: Video-LLaVA-7B at its real size on this machine. A synthetic checkpoint in the published
 * layout of LanguageBind/Video-LLaVA-7B-hf (its config.json, bfloat16, three shards with
 * model.safetensors.index.json, legacy key names, the real 32000-token Llama vocabulary plus <image>, <video>,
 * <pad>) is written once to a folder outside git; then `video-llava generate` runs on it with an image prompt and
 * an 8-frame video prompt, once per weight variant (bf16 as stored, bf16 compute, NF4 and int8 quantized at load),
 * each in a fresh process (its own peak RSS), and PyTorch
 * bfloat16 (the anchor: float32 PyTorch does not fit) runs on the same folder and the same inputs in the same run.
 *
 *   npm run bench:7b [-- --dir DIR] [--variants bf16,bf16c,nf4,nf4c,int8] [--prompts image,video] [--new-tokens 16]
 *                       [--threads N] [--no-torch] [--prepare-only] [--out benchmarks/results]
 *
 * Random weights make no sense of the answers: the point is that it runs, how fast, and in how much memory.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { nativeAddon } from '../src/native/addon';
import { writeSyntheticCheckpoint } from '../src/models/video_llava/synthetic';

const ROOT = path.join(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const PUBLISHED_CONFIG = path.join(ROOT, 'test', 'fixtures', 'configs', 'video_llava_7b_hf.json');
const PROCESSOR_FILES = path.join(ROOT, 'test', 'fixtures', 'processor', 'model');
const IMAGE = path.join(ROOT, 'test', 'fixtures', 'images', 'grad_300x200.png');
const VIDEO = path.join(ROOT, 'assets', 'sample-shapes.mp4');
const PROMPTS = {
  image: 'USER: <image>\nWhat is in this image? ASSISTANT:',
  video: 'USER: <video>\nWhat is happening in this video? ASSISTANT:',
};
type PromptName = keyof typeof PROMPTS;

/** Weight variants: name → extra `generate` flags. */
const VARIANTS: Record<string, { label: string; args: string[]; bytesPerWeight: number }> = {
  bf16: { label: 'bf16 weights, float32 compute', args: [], bytesPerWeight: 2 },
  bf16c: { label: 'bf16 weights, bf16 compute', args: ['--compute-dtype', 'bf16'], bytesPerWeight: 2 },
  // NF4 with double quantization, as Video-LLaVA's documentation loads it; blocks of 64: 0.5 + 4/64 bytes a weight
  nf4: { label: 'NF4 (double quant), float32 compute', args: ['--load-in-4bit', '--bnb-4bit-quant-type', 'nf4', '--bnb-4bit-use-double-quant'], bytesPerWeight: 0.5625 },
  nf4c: { label: 'NF4 (double quant), bf16 compute', args: ['--load-in-4bit', '--bnb-4bit-quant-type', 'nf4', '--bnb-4bit-use-double-quant', '--compute-dtype', 'bf16'], bytesPerWeight: 0.5625 },
  int8: { label: 'int8 (LLM.int8 weights), float32 compute', args: ['--load-in-8bit'], bytesPerWeight: 1 },
};

interface Options {
  dir: string;
  variants: string[];
  prompts: PromptName[];
  newTokens: number;
  threads: number | null;
  torch: boolean;
  prepareOnly: boolean;
  python: string;
  out: string;
}

function parseOptions(argv: string[]): Options {
  const o: Options = {
    dir: process.env.VIDEO_LLAVA_SYNTHETIC_7B ?? path.join(os.homedir(), '.cache', 'video-llava', 'synthetic-video-llava-7b-hf'),
    variants: ['bf16', 'bf16c', 'nf4', 'nf4c', 'int8'],
    prompts: ['image', 'video'],
    newTokens: 16,
    threads: null,
    torch: true,
    prepareOnly: false,
    python: process.env.VIDEO_LLAVA_REF_PYTHON ?? path.join(ROOT, 'reference', '.venv', 'bin', 'python'),
    out: path.join(ROOT, 'benchmarks', 'results'),
  };
  for (let i = 0; i < argv.length; i++) {
    const next = () => argv[++i] ?? fail(`${argv[i - 1]} needs a value`);
    switch (argv[i]) {
      case '--dir': o.dir = next(); break;
      case '--variants': o.variants = next().split(','); break;
      case '--prompts': o.prompts = next().split(',') as PromptName[]; break;
      case '--new-tokens': o.newTokens = Number(next()); break;
      case '--threads': o.threads = Number(next()); break;
      case '--no-torch': o.torch = false; break;
      case '--prepare-only': o.prepareOnly = true; break;
      case '--python': o.python = next(); break;
      case '--out': o.out = next(); break;
      default: fail(`unknown option ${argv[i]}`);
    }
  }
  for (const v of o.variants) if (!VARIANTS[v]) fail(`unknown variant ${v}; known: ${Object.keys(VARIANTS).join(', ')}`);
  for (const p of o.prompts) if (!(p in PROMPTS)) fail(`unknown prompt ${p}; known: image, video`);
  return o;
}

function fail(message: string): never {
  console.error(`bench:7b: ${message}`);
  process.exit(2);
}

const log = (line: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);

// ---- the checkpoint --------------------------------------------------------------------------------------------

/** The real Llama-2 vocabulary and merges, as llama-tokenizer-js embeds them (a devDependency). */
function realVocabulary(): { vocab: string[]; merges: string[] } {
  const source = fs.readFileSync(require.resolve('llama-tokenizer-js/llama-tokenizer.js'), 'utf8');
  const literal = (name: string) => new RegExp(`const ${name} = "([A-Za-z0-9+/=]+)"`).exec(source)?.[1] ?? fail(`${name} not in llama-tokenizer-js`);
  const vocab = Buffer.from(literal('llama_vocab_base64'), 'base64').toString('utf8').split('\n');
  const bytes = Buffer.from(literal('llama_merges_binary'), 'base64');
  const merges: string[] = [];
  for (let i = 0; i + 3 < bytes.length; i += 4) merges.push(`${vocab[bytes.readUInt16LE(i)]} ${vocab[bytes.readUInt16LE(i + 2)]}`);
  return { vocab, merges };
}

/** tokenizer.json of the published layout: the fixture processor's tokenizer with the real vocabulary. */
function writeTokenizer(dir: string): void {
  const template = JSON.parse(fs.readFileSync(path.join(PROCESSOR_FILES, 'tokenizer.json'), 'utf8'));
  const { vocab, merges } = realVocabulary();
  template.model.vocab = Object.fromEntries(vocab.map((token, id) => [token, id]));
  template.model.merges = merges;
  const added = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  template.added_tokens = [added(0, '<unk>'), added(1, '<s>'), added(2, '</s>'), added(32000, '<image>'), added(32001, '<video>'), added(32002, '<pad>')];
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(template));
}

async function ensureCheckpoint(dir: string): Promise<void> {
  const done = path.join(dir, '.complete');
  if (fs.existsSync(done)) return;
  log(`writing the synthetic 7B checkpoint to ${dir} (14.7 GB, a few minutes, once)`);
  const config = JSON.parse(fs.readFileSync(PUBLISHED_CONFIG, 'utf8')).input;
  const t0 = Date.now();
  await writeSyntheticCheckpoint(dir, config, {
    dtype: 'bfloat16',
    onTensor: (n, total) => {
      if (n % 50 === 0 || n === total) log(`  ${n}/${total} tensors`);
    },
  });
  writeTokenizer(dir);
  for (const f of ['tokenizer_config.json', 'processor_config.json', 'chat_template.jinja']) fs.copyFileSync(path.join(PROCESSOR_FILES, f), path.join(dir, f));
  fs.writeFileSync(done, `${new Date().toISOString()}\n`);
  log(`checkpoint written in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

// ---- runs ------------------------------------------------------------------------------------------------------

interface RunResult {
  variant: string;
  prompt: PromptName;
  ok: boolean;
  error?: string;
  loadMs?: number;
  visionMs?: number;
  timeToFirstTokenMs?: number;
  promptTokens?: number;
  prefillTokensPerSec?: number;
  decodeTokensPerSec?: number;
  newTokens?: number;
  peakRssBytes?: number;
  weights?: string;
  wallMs: number;
}

function runGenerate(o: Options, variant: string, prompt: PromptName): RunResult {
  const media = prompt === 'image' ? ['--image', IMAGE] : ['--video', VIDEO];
  const args = [CLI, 'generate', '--model', o.dir, ...media, '--prompt', PROMPTS[prompt], '--max-new-tokens', String(o.newTokens), '--json', ...VARIANTS[variant].args];
  const env = { ...process.env, ...(o.threads ? { VIDEO_LLAVA_THREADS: String(o.threads), VIDEO_LLAVA_BLAS_THREADS: String(o.threads) } : {}) };
  const t0 = Date.now();
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', env, maxBuffer: 1 << 26 });
  const wallMs = Date.now() - t0;
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) return { variant, prompt, ok: false, error: (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | '), wallMs };
  return { ...JSON.parse(line), variant, prompt, ok: true, wallMs }; // the run's prompt name, not the CLI's prompt text
}

function runTorch(o: Options, prompt: PromptName, scratch: string): Record<string, unknown> {
  const inputs = path.join(scratch, `${prompt}.safetensors`);
  const media = prompt === 'image' ? ['--image', IMAGE] : ['--video', VIDEO];
  const pre = spawnSync(process.execPath, [CLI, 'preprocess', '--model', o.dir, ...media, '--prompt', PROMPTS[prompt], '--out', inputs], { encoding: 'utf8' });
  if (pre.status !== 0) return { ok: false, error: pre.stderr.trim() };
  const script = path.join(ROOT, 'benchmarks', 'torch_full7b.py');
  const threads = String(o.threads ?? os.availableParallelism());
  const r = spawnSync(o.python, [script, '--dir', o.dir, '--inputs', inputs, '--new-tokens', String(o.newTokens), '--threads', threads], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) return { ok: false, error: (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ') };
  return { ok: true, ...JSON.parse(line) };
}

/** Weight bytes read per decoded token: every decoder Linear at `bytesPerWeight`, lm_head in bfloat16 (never quantized). */
function decodeBytesPerToken(bytesPerWeight: number): number {
  const t = JSON.parse(fs.readFileSync(PUBLISHED_CONFIG, 'utf8')).expected.text_config;
  const D = t.hidden_size;
  const perLayer = 4 * D * D + 3 * D * t.intermediate_size;
  return t.num_hidden_layers * perLayer * bytesPerWeight + t.vocab_size * D * 2;
}

const fmt = (x: unknown, digits = 1) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(digits) : 'n/a');
const gb = (b: unknown) => (typeof b === 'number' ? (b / 1e9).toFixed(2) : 'n/a');

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  if (!fs.existsSync(CLI)) fail('dist/ is missing: run npm run build first');
  await ensureCheckpoint(o.dir);
  if (o.prepareOnly) return;
  const addon = nativeAddon();
  const bandwidth = addon ? addon.readBandwidth(2 ** 31, 5) : NaN;
  const features = addon?.features();
  log(`machine: ${os.cpus()[0]?.model}, ${os.availableParallelism()} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB; addon ${features ? JSON.stringify(features) : 'not built'}`);
  log(`read bandwidth ${(bandwidth / 1e9).toFixed(1)} GB/s; bf16 decode reads ${gb(decodeBytesPerToken(2))} GB per token → bound ${fmt(bandwidth / decodeBytesPerToken(2), 2)} tok/s`);

  const results: RunResult[] = [];
  for (const variant of o.variants) {
    for (const prompt of o.prompts) {
      log(`generate: ${VARIANTS[variant].label}, ${prompt} prompt`);
      const r = runGenerate(o, variant, prompt);
      results.push(r);
      log(r.ok ? `  ttft ${fmt((r.timeToFirstTokenMs ?? 0) / 1000)} s, prefill ${fmt(r.prefillTokensPerSec)} tok/s, decode ${fmt(r.decodeTokensPerSec, 2)} tok/s, peak RSS ${gb(r.peakRssBytes)} GB` : `  failed: ${r.error}`);
    }
  }
  const torch: Array<Record<string, unknown>> = [];
  if (o.torch) {
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'bench7b-'));
    for (const prompt of o.prompts) {
      log(`PyTorch bf16: ${prompt} prompt`);
      const r: Record<string, unknown> = { prompt, ...runTorch(o, prompt, scratch) };
      torch.push(r);
      log(r.ok ? `  ttft ${fmt(Number(r.timeToFirstTokenMs) / 1000)} s, decode ${fmt(r.decodeTokensPerSec, 2)} tok/s, peak RSS ${gb(r.peakRssBytes)} GB` : `  failed: ${r.error}`);
    }
    fs.rmSync(scratch, { recursive: true, force: true });
  }

  const rows = [
    '| run | prompt | tokens | load s | vision s | TTFT s | prefill tok/s | decode tok/s | decode ÷ bound | peak RSS GB |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...results.map((r) =>
      r.ok
        ? `| ${VARIANTS[r.variant].label} | ${r.prompt} | ${r.promptTokens} | ${fmt((r.loadMs ?? 0) / 1000)} | ${fmt((r.visionMs ?? 0) / 1000)} | ${fmt((r.timeToFirstTokenMs ?? 0) / 1000)} | ${fmt(r.prefillTokensPerSec)} | ${fmt(r.decodeTokensPerSec, 2)} | ${fmt((r.decodeTokensPerSec ?? 0) / (bandwidth / decodeBytesPerToken(VARIANTS[r.variant].bytesPerWeight)), 2)} | ${gb(r.peakRssBytes)} |`
        : `| ${VARIANTS[r.variant].label} | ${r.prompt} | failed: ${r.error} |`,
    ),
    ...torch.map((r) =>
      r.ok
        ? `| PyTorch ${r.torch} bf16 | ${r.prompt} | ${r.promptTokens} | ${fmt(Number(r.loadMs) / 1000)} | ${fmt(Number(r.visionMs) / 1000)} | ${fmt(Number(r.timeToFirstTokenMs) / 1000)} | ${fmt(r.prefillTokensPerSec)} | ${fmt(r.decodeTokensPerSec, 2)} | ${fmt(Number(r.decodeTokensPerSec) / (bandwidth / decodeBytesPerToken(2)), 2)} | ${gb(r.peakRssBytes)} |`
        : `| PyTorch bf16 | ${r.prompt} | failed: ${r.error} |`,
    ),
  ];
  const header = [
    `# Full-size synthetic Video-LLaVA-7B (${new Date().toISOString()})`,
    '',
    `Machine: ${os.cpus()[0]?.model}, ${os.availableParallelism()} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB. Addon: ${features ? `${features.isa}, ${features.threads} threads` : 'not built'}.`,
    `Read bandwidth (all threads) ${(bandwidth / 1e9).toFixed(1)} GB/s; a decode step reads ${gb(decodeBytesPerToken(2))} GB of weights in bf16 (bound ${fmt(bandwidth / decodeBytesPerToken(2), 2)} tok/s), ` +
      `${gb(decodeBytesPerToken(0.5625))} GB in NF4 (bound ${fmt(bandwidth / decodeBytesPerToken(0.5625), 2)} tok/s), ${gb(decodeBytesPerToken(1))} GB in int8; "decode ÷ bound" uses the run's format.`,
    `${o.newTokens} new tokens per run; decode rate over tokens 2..${o.newTokens}; TTFT = vision + prefill.`,
    '',
  ];
  const md = [...header, ...rows, ''].join('\n');
  fs.mkdirSync(o.out, { recursive: true });
  fs.writeFileSync(path.join(o.out, 'full7b.md'), md);
  fs.writeFileSync(path.join(o.out, 'full7b.json'), JSON.stringify({ bandwidth, features, results, torch }, null, 1));
  console.log(`\n${md}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
