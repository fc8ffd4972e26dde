/**
 * The demo page: the shipped trained model answers a question about the sample video (or the user's own video or
 * image) inside the browser, streaming the answer token by token, with the timings. Everything model-side is the
 * library (dist/web/video-llava.js, the same code as in Node); this file is only the page.
 *
 * URL parameters: model (default assets/trained-model/), video (default assets/sample-shapes.mp4), backend (wasm,
 * webgl, webgpu), question, autorun=0 (do not answer on load). `window.videoLlava` exposes the loaded model and a few
 * helpers for automation (the browser tests, benchmarks/browser.ts).
 */
import * as lib from '../../src/web';

const {
  VideoLlavaForConditionalGeneration,
  VideoLlavaProcessor,
  buildPrompt,
  describeBackend,
  disposeProcessorOutput,
  generate,
  loadGenerationConfig,
  platform,
  setBackend,
  tf,
} = lib;

type Media = { kind: 'video' | 'image'; source: string | Blob; name: string };

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
const MODEL_URL = params.get('model') ?? 'assets/trained-model/';
const SAMPLE: Media = { kind: 'video', source: params.get('video') ?? 'assets/sample-shapes.mp4', name: 'sample-shapes.mp4 (a purple cross moving left)' };

const ui = {
  status: $<HTMLParagraphElement>('status'),
  drop: $<HTMLDivElement>('drop'),
  video: $<HTMLVideoElement>('video'),
  image: $<HTMLImageElement>('image'),
  file: $<HTMLInputElement>('file'),
  sample: $<HTMLButtonElement>('sample'),
  mediaName: $<HTMLSpanElement>('media-name'),
  form: $<HTMLFormElement>('ask'),
  question: $<HTMLInputElement>('question'),
  go: $<HTMLButtonElement>('go'),
  answer: $<HTMLParagraphElement>('answer'),
  error: $<HTMLParagraphElement>('error'),
  backend: $<HTMLSelectElement>('backend'),
  progress: $<HTMLProgressElement>('progress'),
  t: {
    load: $('t-load'),
    vision: $('t-vision'),
    prefill: $('t-prefill'),
    decode: $('t-decode'),
    backend: $('t-backend'),
  },
};

interface Loaded {
  model: InstanceType<typeof VideoLlavaForConditionalGeneration>;
  processor: InstanceType<typeof VideoLlavaProcessor>;
  generationConfig: Awaited<ReturnType<typeof loadGenerationConfig>>;
  backend: string;
  backendDescription: string;
  /** Milliseconds from navigation start until the model was ready. */
  loadMs: number;
}

export interface Answer extends lib.GenerateTimings {
  answer: string;
  tokens: number[];
  /** Milliseconds since navigation start when the answer was complete. */
  doneAt: number;
}

let loaded: Loaded | null = null;
let media: Media = SAMPLE;
let previewUrl: string | null = null;
let busy = false;

const ms = (x: number): string => (x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${Math.round(x)} ms`);
const rate = (n: number, t: number): string => (t > 0 ? `${Math.round((n / t) * 1000)} tok/s` : '–');

/** A timing tile: the value, and a detail line under it. */
function setTiming(el: HTMLElement, value: string, detail = ''): void {
  el.replaceChildren(value);
  if (detail) {
    const small = document.createElement('small');
    small.textContent = detail;
    el.append(small);
  }
}

function showError(err: unknown): void {
  const message = err instanceof Error ? err.message : String(err);
  ui.error.textContent = message;
  ui.error.hidden = false;
}

function clearError(): void {
  ui.error.hidden = true;
  ui.error.textContent = '';
}

function showMedia(next: Media): void {
  media = next;
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = typeof next.source === 'string' ? null : URL.createObjectURL(next.source);
  const url = previewUrl ?? (next.source as string);
  ui.video.hidden = next.kind !== 'video';
  ui.image.hidden = next.kind !== 'image';
  if (next.kind === 'video') {
    ui.video.src = url;
    ui.video.play().catch(() => undefined);
  } else {
    ui.video.removeAttribute('src');
    ui.image.src = url;
  }
  ui.mediaName.textContent = next.name;
  if (next.kind === 'image' && /this video/.test(ui.question.value)) ui.question.value = 'What is in the image?';
  if (next.kind === 'video' && /the image/.test(ui.question.value)) ui.question.value = 'What is happening in this video?';
}

function mediaFromFile(file: File): Media {
  const kind = file.type.startsWith('image/') || /\.(png|jpe?g|gif|webp|bmp)$/i.test(file.name) ? 'image' : 'video';
  return { kind, source: file, name: file.name };
}

async function load(): Promise<Loaded> {
  const wanted = params.get('backend') ?? 'wasm';
  ui.backend.value = wanted;
  let backend: string;
  try {
    backend = await setBackend(wanted);
  } catch (err) {
    showError(err);
    backend = await setBackend('wasm');
    ui.backend.value = 'wasm';
  }
  const backendDescription = await describeBackend();
  const [engine, ...details] = backendDescription.split(' (');
  setTiming(ui.t.backend, engine, details.join(' (').replace(/\)$/, ''));
  ui.status.textContent = `Loading the model on ${backend}…`;
  ui.progress.hidden = false;
  const files = await platform.modelFiles(MODEL_URL);
  const [processor, model, generationConfig] = await Promise.all([
    VideoLlavaProcessor.fromPretrained(files),
    VideoLlavaForConditionalGeneration.fromPretrained(files, {
      onProgress: (p) => (ui.progress.value = p.bytesTotal > 0 ? p.bytesLoaded / p.bytesTotal : 1),
    }),
    loadGenerationConfig(files),
  ]);
  ui.progress.hidden = true;
  const loadMs = performance.now();
  setTiming(ui.t.load, ms(loadMs), 'since opening');
  ui.status.textContent = `Ready on ${backend}`;
  return { model, processor, generationConfig, backend, backendDescription, loadMs };
}

/** Answers `question` about the current media, streaming into the page. */
async function ask(question = ui.question.value): Promise<Answer> {
  if (!loaded) throw new Error('the model is not loaded yet');
  const { model, processor, generationConfig } = loaded;
  const current = media;
  busy = true;
  ui.go.disabled = true;
  clearError();
  ui.answer.textContent = '';
  ui.answer.classList.add('busy');
  ui.status.textContent = 'Reading the ' + current.kind + '…';
  let inputs: Awaited<ReturnType<typeof processor.call>> | null = null;
  try {
    const text = buildPrompt(processor, question, current.kind === 'image' ? 1 : 0, current.kind === 'video' ? 1 : 0);
    inputs = await processor.call(text, current.kind === 'image' ? { images: [current.source] } : { videos: [current.source] });
    ui.status.textContent = 'Thinking…';
    const result = await generate(model, inputs, {
      generationConfig,
      maxNewTokens: 60,
      tokenizer: processor.tokenizer,
      onToken: (e) => (ui.answer.textContent += e.text[0]),
    });
    const t = result.timings;
    const answer = processor.decode(result.newTokens[0], { skipSpecialTokens: true });
    ui.answer.textContent = answer;
    setTiming(ui.t.vision, ms(t.visionMs), current.kind === 'video' ? `${inputs.frameIndices?.[0]?.length ?? 0} frames` : '1 image');
    setTiming(ui.t.prefill, ms(t.prefillMs), `${t.prefillTokens} tok · ${rate(t.prefillTokens, t.prefillMs)}`);
    setTiming(ui.t.decode, ms(t.decodeMs), `${t.decodeTokens} tok · ${rate(t.decodeTokens, t.decodeMs)}`);
    ui.status.textContent = `Answered on ${loaded.backend} in ${ms(t.visionMs + t.prefillMs + t.decodeMs)}`;
    return { answer, tokens: result.newTokens[0], ...t, doneAt: performance.now() };
  } catch (err) {
    showError(err);
    ui.status.textContent = 'Ready';
    throw err;
  } finally {
    if (inputs) disposeProcessorOutput(inputs);
    ui.answer.classList.remove('busy');
    busy = false;
    ui.go.disabled = false;
  }
}

function wire(): void {
  ui.form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!busy) ask().catch(() => undefined);
  });
  ui.file.addEventListener('change', () => {
    const file = ui.file.files?.[0];
    if (file) choose(mediaFromFile(file));
    ui.file.value = '';
  });
  ui.sample.addEventListener('click', () => choose(SAMPLE));
  ui.drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    ui.drop.classList.add('over');
  });
  ui.drop.addEventListener('dragleave', () => ui.drop.classList.remove('over'));
  ui.drop.addEventListener('drop', (e) => {
    e.preventDefault();
    ui.drop.classList.remove('over');
    const file = e.dataTransfer?.files?.[0];
    if (file) choose(mediaFromFile(file));
  });
  ui.video.addEventListener('error', () => (ui.video.hidden = true));
  ui.image.addEventListener('error', () => (ui.image.hidden = true));
  ui.backend.addEventListener('change', () => {
    params.set('backend', ui.backend.value);
    location.search = params.toString();
  });
}

/** A new video or image: preview it and answer the current question about it. */
function choose(next: Media): void {
  showMedia(next);
  if (loaded && !busy) ask().catch(() => undefined);
}

// ---- helpers for automation ------------------------------------------------------------------------------------

function toBase64(array: Float32Array | Uint8Array): string {
  const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

function fromBase64(text: string): Uint8Array {
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

interface FramesInput {
  width: number;
  height: number;
  /** RGB24 frames, base64. */
  frames: string[];
  indices: number[];
}

const automation = {
  lib,
  get loaded() {
    return loaded;
  },
  ask,
  /** The processor's pixel_values for one image URL (float32, base64) and their shape. */
  async pixelValues(url: string) {
    const out = await loaded!.processor.call(buildPrompt(loaded!.processor, 'x', 1, 0), { images: [url] });
    try {
      return { shape: out.pixelValuesImages!.shape, data: toBase64((await out.pixelValuesImages!.data()) as Float32Array) };
    } finally {
      disposeProcessorOutput(out);
    }
  },
  /** A video's sampled frames as the page decodes them (RGB24, base64). */
  async videoFrames(url: string) {
    const r = await platform.readVideoFrames(url, { numFrames: 8 });
    return { ...r, frames: r.frames.map(toBase64) };
  },
  /** Logits of the prompt for `question` about a video (URL, or frames given as RGB) or an image URL: float32 base64. */
  async logits(question: string, input: { video?: string | FramesInput; image?: string }) {
    const { processor, model } = loaded!;
    const videos = typeof input.video === 'object'
      ? [{ frames: input.video.frames.map((f) => ({ data: fromBase64(f), width: (input.video as FramesInput).width, height: (input.video as FramesInput).height, channels: 3 as const })), indices: input.video.indices }]
      : input.video ? [input.video] : undefined;
    const images = input.image ? [input.image] : undefined;
    const prompt = buildPrompt(processor, question, images ? 1 : 0, videos ? 1 : 0);
    const inputs = await processor.call(prompt, { videos, images });
    try {
      const before = tf.memory().numTensors;
      const out = model.forward(inputs);
      const data = (await out.logits.data()) as Float32Array;
      const shape = out.logits.shape;
      lib.disposeOutput(out);
      return { inputIds: inputs.inputIds[0], shape, data: toBase64(data), leaked: tf.memory().numTensors - before };
    } finally {
      disposeProcessorOutput(inputs);
    }
  },
};

declare global {
  interface Window {
    videoLlava: typeof automation & { ready: Promise<Loaded>; firstAnswer: Promise<Answer | null> };
  }
}

async function main(): Promise<void> {
  wire();
  showMedia(SAMPLE);
  if (params.get('question')) ui.question.value = params.get('question')!;
  const ready = load();
  const firstAnswer = ready.then(async (l) => {
    loaded = l;
    ui.go.disabled = false;
    if (params.get('autorun') === '0') {
      ui.status.textContent = `Ready on ${l.backend}`;
      return null;
    }
    return ask();
  });
  window.videoLlava = Object.assign(automation, { ready, firstAnswer });
  ready.catch((err) => {
    showError(err);
    ui.status.textContent = 'The model could not be loaded';
  });
  firstAnswer.catch(() => undefined);
}

main();
