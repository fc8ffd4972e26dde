import * as path from 'path';
import { main } from '../../src/cli/main';
import { capture } from '../helpers/cli';

const ROOT = path.join(__dirname, '..', '..');
const DEMO = path.join(ROOT, 'assets', 'demo-model');
const SAMPLE = path.join(ROOT, 'assets', 'sample.mp4');


describe('video-llava generate (shipped demo checkpoint and sample video)', () => {
  test('streams the same answer --json returns, then a one-line summary', async () => {
    const common = ['generate', '--model', DEMO, '--video', SAMPLE, '--prompt', 'What happens?', '--max-new-tokens', '12'];
    let io = capture();
    expect(await main(common)).toBe(0);
    io.restore();
    const streamed = io.out.join('');
    const summary = io.err.filter((l) => l.startsWith('load '));
    expect(summary).toHaveLength(1);
    expect(summary[0]).toMatch(/vision \d+ ms · prefill \d+ tok at [\d.]+ tok\/s · decode 12 tok at [\d.]+ tok\/s/);

    io = capture();
    expect(await main([...common, '--json'])).toBe(0);
    io.restore();
    const result = JSON.parse(io.out.join(''));
    expect(result.newTokenIds).toHaveLength(12);
    expect(result.frameIndices[0]).toHaveLength(8);
    // Greedy decoding is deterministic: the streamed pieces add up to the decoded answer.
    expect(streamed.trimEnd()).toBe(result.answer.trimEnd());
    expect(result.prompt).toMatch(/^USER: <video>+\nWhat happens\? ASSISTANT:$/);
  });

  test('user mistakes print one line and exit 1', async () => {
    const io = capture();
    const noPrompt = await main(['generate', '--model', DEMO]);
    const noVideo = await main(['generate', '--model', DEMO, '--video', path.join(ROOT, 'nope.mp4'), '--prompt', 'x']);
    const badBackend = await main(['generate', '--model', DEMO, '--prompt', 'x', '--backend', 'gpu']);
    io.restore();
    expect([noPrompt, noVideo, badBackend]).toEqual([1, 1, 1]);
    const errors = io.err.filter((l) => l.startsWith('video-llava generate:'));
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatch(/--prompt: is required/);
    expect(errors[1]).toMatch(/nope\.mp4/);
    expect(errors[2]).toMatch(/unknown backend "gpu"/);
  });
});
