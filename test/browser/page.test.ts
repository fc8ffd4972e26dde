/**
 * The demo page (examples/web, built into dist/web) in a real browser: headless Chromium from the Debian package,
 * driven by puppeteer-core, loading the shipped trained model from a local server. The page runs the same model,
 * processor and generation code as Node, so the checks compare it with Node run here, in this process, on the wasm
 * backend: the answer to the sample question, the decoded video frames, the image pixel values, the logits.
 *
 * Run with `npm run test:browser` (builds dist/web first); `.ci/run` runs it once and requires Chromium there
 * (VIDEO_LLAVA_BROWSER_TESTS=required). Elsewhere, without Chromium, the suite is skipped with one line saying why.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Page } from 'puppeteer-core';
import { webMounts } from '../../src/cli/web';
import { WebServer, startWebServer } from '../../src/cli/web_server';
import { generate, loadGenerationConfig } from '../../src/generation/generate';
import { VideoLlavaForConditionalGeneration, disposeOutput } from '../../src/models/video_llava/modeling';
import { VideoLlavaProcessor, disposeProcessorOutput } from '../../src/processing/processor';
import { buildPrompt } from '../../src/processing/prompt';
import { readVideoFrames } from '../../src/processing/video';
import { LaunchedBrowser, NO_CHROMIUM, findChromium, launchChromium } from './chromium';

const ROOT = path.join(__dirname, '..', '..');
const MODEL = path.join(ROOT, 'assets', 'trained-model');
const SAMPLE = path.join(ROOT, 'assets', 'sample-shapes.mp4');
const QUESTION = 'What is happening in this video?';
/** What `npm run demo` (the Node CLI) answers; also checked against Node's own generate() below. */
const DEMO_ANSWER = 'a purple cross moves left.';

const chromium = findChromium();
const required = process.env.VIDEO_LLAVA_BROWSER_TESTS === 'required';
if (!chromium && !required) console.warn(NO_CHROMIUM);
const suite = chromium || required ? describe : describe.skip;

let server: WebServer;
let launched: LaunchedBrowser;
let page: Page;
let model: VideoLlavaForConditionalGeneration;
let processor: VideoLlavaProcessor;
const requests: string[] = [];

const decode64 = (text: string): Buffer => Buffer.from(text, 'base64');
const floats = (text: string): Float32Array => {
  const b = decode64(text);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
};

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

async function openPage(query = ''): Promise<void> {
  await page.goto(`${server.url}${query}`);
  await page.waitForFunction('window.videoLlava !== undefined');
}

/** Node's logits for a prompt about media, through the same processor and model code as the page. */
async function nodeLogits(question: string, media: { video?: string; image?: string }): Promise<{ ids: number[]; logits: Float32Array }> {
  const prompt = buildPrompt(processor, question, media.image ? 1 : 0, media.video ? 1 : 0);
  const inputs = await processor.call(prompt, { videos: media.video ? [media.video] : undefined, images: media.image ? [media.image] : undefined });
  try {
    const out = model.forward(inputs);
    const logits = (await out.logits.data()) as Float32Array;
    disposeOutput(out);
    return { ids: inputs.inputIds[0], logits };
  } finally {
    disposeProcessorOutput(inputs);
  }
}

suite('the demo page in headless Chromium', () => {
  beforeAll(async () => {
    if (!chromium) throw new Error(`${NO_CHROMIUM}; VIDEO_LLAVA_BROWSER_TESTS=required`);
    const mounts = { ...webMounts(), '/fixtures/': path.join(ROOT, 'test', 'fixtures') };
    server = await startWebServer({ mounts, onRequest: (method, url, status) => requests.push(`${method} ${url} ${status}`) });
    launched = await launchChromium(chromium);
    page = await launched.browser.newPage();
    processor = await VideoLlavaProcessor.fromPretrained(MODEL);
    model = await VideoLlavaForConditionalGeneration.fromPretrained(MODEL);
  });

  afterAll(async () => {
    model?.dispose();
    await launched?.close();
    await server?.close();
  });

  test('answers the sample question with the same text and tokens as Node, streamed, with the timings shown', async () => {
    await openPage();
    const first = await page.evaluate(() => window.videoLlava.firstAnswer);
    const inputs = await processor.call(buildPrompt(processor, QUESTION, 0, 1), { videos: [SAMPLE] });
    const node = await generate(model, inputs, { generationConfig: await loadGenerationConfig(MODEL), maxNewTokens: 60, tokenizer: processor.tokenizer });
    disposeProcessorOutput(inputs);
    expect(node.newTokens[0]).toEqual(first!.tokens);
    expect(first!.answer).toBe(processor.decode(node.newTokens[0], { skipSpecialTokens: true }));
    expect(first!.answer).toBe(DEMO_ANSWER);
    // what the user sees
    expect(await page.$eval('#answer', (e) => e.textContent)).toBe(DEMO_ANSWER);
    const shown = await page.$$eval('.timings dd', (dds) => dds.map((d) => (d as HTMLElement).innerText));
    expect(shown).toHaveLength(5);
    for (const value of shown) expect(value).not.toBe('–');
    expect(shown[4]).toMatch(/^wasm\s+SIMD, \d+ threads?$/);
    expect(await page.evaluate(() => crossOriginIsolated)).toBe(true);
    // the weights were read by byte ranges
    expect(requests.some((r) => /model\.safetensors 206$/.test(r))).toBe(true);
  });

  test('video frames decoded in the page (WebCodecs) equal ffmpeg\'s in Node, byte for byte', async () => {
    for (const file of ['assets/sample-shapes.mp4', 'fixtures/videos/h264_yuv420p.mp4', 'fixtures/videos/h264_bt709_full.mp4']) {
      const inPage = await page.evaluate((url) => window.videoLlava.videoFrames(url), file);
      const node = await readVideoFrames(path.join(ROOT, file.replace(/^fixtures/, 'test/fixtures')), { numFrames: 8 });
      expect([inPage.width, inPage.height, inPage.totalFrames, inPage.indices]).toEqual([node.width, node.height, node.totalFrames, node.indices]);
      // H.264 decodes bit-exactly; the page converts with swscale's own arithmetic (src/processing/yuv.ts): bound 0
      inPage.frames.forEach((f, i) => expect(decode64(f).equals(Buffer.from(node.frames[i]))).toBe(true));
    }
  });

  test('image pixel values equal the Node processor\'s exactly (lossless images decoded by the browser)', async () => {
    const images = ['grad_100x60.png', 'grad_300x200.png', 'grad_224x224.png', 'grad_1x300.png', 'gray_64x48.png', 'bilevel_64x48.png', 'lossless_120x90.webp'];
    for (const name of images) {
      const inPage = await page.evaluate((url) => window.videoLlava.pixelValues(url), `fixtures/images/${name}`);
      const out = await processor.call(buildPrompt(processor, 'x', 1, 0), { images: [path.join(ROOT, 'test', 'fixtures', 'images', name)] });
      const node = (await out.pixelValuesImages!.data()) as Float32Array;
      expect(inPage.shape).toEqual(out.pixelValuesImages!.shape);
      disposeProcessorOutput(out);
      expect(Buffer.from(floats(inPage.data).buffer).equals(Buffer.from(node.buffer, node.byteOffset, node.byteLength))).toBe(true);
    }
  });

  test('logits of the sample prompt (video) and of an image prompt equal Node\'s within 1e-5 on wasm', async () => {
    for (const media of [{ video: 'assets/sample-shapes.mp4' }, { image: 'fixtures/images/grad_300x200.png' }]) {
      const local = Object.fromEntries(Object.entries(media).map(([k, v]) => [k, path.join(ROOT, v.replace(/^fixtures/, 'test/fixtures'))]));
      const question = media.video ? QUESTION : 'What is in the image?';
      const inPage = await page.evaluate((q, m) => window.videoLlava.logits(q, m), question, media);
      const node = await nodeLogits(question, local);
      expect(inPage.inputIds).toEqual(node.ids);
      expect(inPage.leaked).toBe(0);
      const diff = maxAbsDiff(floats(inPage.data), node.logits);
      console.log(`page vs Node logits (${Object.values(media)[0]}): ${inPage.shape.join('x')}, max abs diff ${diff.toExponential(2)}`);
      expect(diff).toBeLessThan(1e-5); // the same wasm kernels (XNNPACK) on the same inputs: the bound
    }
  });

  test('WebGL and WebGPU (where the browser has an adapter): logits close to wasm, the same answer on WebGPU', async () => {
    const wasm = await page.evaluate((q) => window.videoLlava.logits(q, { video: 'assets/sample-shapes.mp4' }), QUESTION);
    for (const backend of ['webgl', 'webgpu']) {
      const other = await launched.browser.newPage();
      try {
        await other.goto(`${server.url}?backend=${backend}&autorun=0`);
        await other.waitForFunction('window.videoLlava !== undefined');
        const loaded = await other.evaluate(async () => (await window.videoLlava.ready).backend);
        if (loaded !== backend) {
          // the page fell back to wasm and said why
          expect(await other.$eval('#error', (e) => e.textContent)).toMatch(/^backend "webgpu": this browser exposes no WebGPU adapter/);
          console.log(`${backend}: not available in this browser (the page said so and ran on wasm)`);
          continue;
        }
        const logits = await other.evaluate((q) => window.videoLlava.logits(q, { video: 'assets/sample-shapes.mp4' }), QUESTION);
        const diff = maxAbsDiff(floats(logits.data), floats(wasm.data));
        console.log(`${backend}: logits vs wasm max abs diff ${diff.toExponential(2)}`);
        expect(diff).toBeLessThan(1e-4); // float32 in shaders: other summation orders and exp/erf approximations
        // the whole answer where decoding is quick enough for CI (WebGL on SwiftShader decodes ~1 token/s)
        if (backend === 'webgpu') expect((await other.evaluate(() => window.videoLlava.ask())).answer).toBe(DEMO_ANSWER);
      } finally {
        await other.close();
      }
    }
  });

  test('a bad file gives a visible, clear error and the page keeps working', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'video-llava-bad-'));
    const badVideo = path.join(dir, 'holiday.mp4');
    const badImage = path.join(dir, 'photo.png');
    fs.writeFileSync(badVideo, 'this is not a video\n');
    fs.writeFileSync(badImage, Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 1, 2, 3]));
    try {
      const input = (await page.$('#file')) as import('puppeteer-core').ElementHandle<HTMLInputElement>;
      for (const [file, pattern] of [
        [badVideo, /^holiday\.mp4: not an MP4\/MOV file the page can read/],
        [badImage, /^photo\.png: not a decodable image/],
      ] as const) {
        await input.uploadFile(file);
        await page.waitForSelector('#error:not([hidden])');
        await page.waitForFunction(() => !document.querySelector('#answer')!.classList.contains('busy'));
        expect(await page.$eval('#error', (e) => e.textContent)).toMatch(pattern);
        expect(await page.$eval('#go', (b) => (b as HTMLButtonElement).disabled)).toBe(false);
      }
      // still working: the sample again
      const before = await page.evaluate(() => window.videoLlava.lib.tf.memory().numTensors);
      await page.click('#sample');
      await page.waitForFunction((a) => document.querySelector('#answer')!.textContent === a && !document.querySelector('#answer')!.classList.contains('busy'), {}, DEMO_ANSWER);
      expect(await page.$eval('#error', (e) => (e as HTMLElement).hidden)).toBe(true);
      expect(await page.evaluate(() => window.videoLlava.lib.tf.memory().numTensors)).toBe(before);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a second visit loads the model from Cache Storage with the model server gone', async () => {
    await page.setRequestInterception(true);
    const refused: string[] = [];
    const onRequest = (req: import('puppeteer-core').HTTPRequest): void => {
      if (req.url().includes('/assets/trained-model/')) {
        refused.push(req.url());
        void req.abort('internetdisconnected');
      } else void req.continue();
    };
    page.on('request', onRequest);
    try {
      await openPage();
      const again = await page.evaluate(() => window.videoLlava.firstAnswer);
      expect(again!.answer).toBe(DEMO_ANSWER);
      expect(refused).toEqual([]); // nothing of the model was even asked for
      console.log(`second visit (model from Cache Storage): first answer ${Math.round(again!.doneAt)} ms after navigation`);
    } finally {
      page.off('request', onRequest);
      await page.setRequestInterception(false);
    }
  });
});
