import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { main } from '../../src/cli/main';
import { capture } from '../helpers/cli';
import { SafetensorsFile } from '../../src/weights/safetensors';
import { CASES, diff, modelDir } from '../helpers/fixtures';


describe('video-llava forward', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-forward-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('writes logits equal to Python on a fixture case (inputs read under their HF names)', async () => {
    const inputs = path.join(CASES, 'faithful', 'mixed.safetensors');
    const out = path.join(tmp, 'out.safetensors');
    const io = capture();
    const code = await main(['forward', '--model', modelDir('faithful'), '--inputs', inputs, '--out', out, '--hidden-states']);
    io.restore();
    expect(code).toBe(0);
    const ours = await SafetensorsFile.open(out);
    const ref = await SafetensorsFile.open(inputs);
    for (const name of ['logits', 'image_features', 'video_features', 'decoder.hidden_states.2']) {
      const [a, b] = [await ours.readTensor(name), await ref.readTensor(name)];
      // Same float32 tolerance as the parity suite (accumulation order only).
      expect(diff(a, b).abs).toBeLessThanOrEqual(1e-4);
      tf.dispose([a, b]);
    }
    await Promise.all([ours.close(), ref.close()]);
  });

  test('a user mistake prints one line and exits 1', async () => {
    const io = capture();
    const missing = await main(['forward', '--model', modelDir('faithful'), '--out', path.join(tmp, 'x.safetensors')]);
    const badFile = await main(['forward', '--model', modelDir('faithful'), '--inputs', path.join(tmp, 'nope.safetensors'), '--out', path.join(tmp, 'y')]);
    const unknown = await main(['forward', '--bogus']);
    io.restore();
    expect([missing, badFile, unknown]).toEqual([1, 1, 1]);
    expect(io.err).toHaveLength(3);
    expect(io.err[0]).toMatch(/--inputs: is required/);
    expect(io.err[1]).toMatch(/nope\.safetensors/);
    expect(io.err.join('')).not.toMatch(/\n\s+at /); // no stack traces
  });
});

describe('video-llava forward --generate', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vl-forward-gen-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test.each(['mixed', 'batch_padded'])('greedy generated_ids equal Python generate() on faithful/%s', async (caseName) => {
    const inputs = path.join(CASES, 'faithful', `${caseName}.safetensors`);
    const out = path.join(tmp, `${caseName}.safetensors`);
    const io = capture();
    const code = await main(['forward', '--model', modelDir('faithful'), '--inputs', inputs, '--out', out, '--generate', '8', '--ignore-eos']);
    io.restore();
    expect(code).toBe(0);
    const ours = await SafetensorsFile.open(out);
    const ref = await SafetensorsFile.open(inputs);
    expect(ours.info('generated_ids').dtype).toBe('I64');
    // Token ids are exact: the fixture's greedy margins are ≥ 1e-3, far above float32 noise.
    expect(Array.from(await ours.readInt32('generated_ids'))).toEqual(Array.from(await ref.readInt32('generated_ids')));
    await Promise.all([ours.close(), ref.close()]);
  });
});
