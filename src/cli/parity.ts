/**
 * `video-llava parity`: the per-stage parity report. For each fixture (a model directory and case files
 * written by reference/gen_models.py) and each stage — pixel input, every CLIP hidden state, projector
 * output, merged embeddings, every decoder layer, logits — the max absolute and relative difference
 * between this implementation and Python.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { setBackend } from '../backend';
import { InputError } from '../errors';
import { VideoLlavaForConditionalGeneration, VideoLlavaForwardOutput, disposeOutput } from '../models/video_llava/modeling';
import { SafetensorsFile } from '../weights/safetensors';
import { FormatOptions } from '../models/video_llava/weight_formats';
import { WEIGHT_HELP, WEIGHT_OPTIONS, parse, weightOptions } from './args';

export const PARITY_HELP = `video-llava parity [--fixtures DIR] [--model NAME]... [--json]

Prints, for every fixture model and case under DIR (default test/fixtures: models/<name>/ and
cases/<name>/<case>.safetensors from reference/gen_models.py), the max absolute and relative
difference from Python at each stage. --json prints the rows as JSON instead of a table.

${WEIGHT_HELP}
`;

export interface ParityRow {
  model: string;
  case: string;
  stage: string;
  maxAbs: number;
  maxRel: number;
}

function maxDiff(actual: tf.Tensor, expected: tf.Tensor): { maxAbs: number; maxRel: number } {
  const a = actual.dataSync();
  const b = expected.dataSync();
  if (a.length !== b.length) return { maxAbs: NaN, maxRel: NaN };
  let maxAbs = 0;
  let maxRel = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    maxAbs = Math.max(maxAbs, d);
    maxRel = Math.max(maxRel, d / (Math.abs(b[i]) + 1e-6));
  }
  return { maxAbs, maxRel };
}

/** The stages a forward output provides, in pipeline order, under the fixture's tensor names. */
function stages(out: VideoLlavaForwardOutput): Array<[string, tf.Tensor | null | undefined]> {
  const list: Array<[string, tf.Tensor | null | undefined]> = [];
  out.imageTowerHiddenStates?.forEach((h, k) => list.push([`image_tower.hidden_states.${k}`, h]));
  out.videoTowerHiddenStates?.forEach((h, k) => list.push([`video_tower.hidden_states.${k}`, h]));
  list.push(['image_features', out.imageHiddenStates], ['video_features', out.videoHiddenStates]);
  list.push(['inputs_embeds', out.hiddenStates?.[0]]);
  out.hiddenStates?.forEach((h, k) => list.push([`decoder.hidden_states.${k}`, h]));
  list.push(['logits', out.logits]);
  return list;
}

export async function parityReport(fixtures: string, models?: string[], formats: FormatOptions = {}): Promise<ParityRow[]> {
  const casesRoot = path.join(fixtures, 'cases');
  if (!fs.existsSync(casesRoot)) throw new InputError('--fixtures', `${casesRoot} does not exist`);
  const names = models ?? fs.readdirSync(casesRoot).filter((m) => fs.existsSync(path.join(fixtures, 'models', m, 'config.json'))).sort();
  const rows: ParityRow[] = [];
  for (const name of names) {
    const model = await VideoLlavaForConditionalGeneration.fromPretrained(path.join(fixtures, 'models', name), formats);
    const caseFiles = fs.readdirSync(path.join(casesRoot, name)).filter((f) => f.endsWith('.safetensors')).sort();
    for (const file of caseFiles) {
      const c = await SafetensorsFile.open(path.join(casesRoot, name, file));
      const read = async <T extends tf.Tensor>(n: string) => (c.tensors.has(n) ? ((await c.readTensor(n)) as T) : undefined);
      const inputs = {
        inputIds: (await read<tf.Tensor2D>('input_ids'))!,
        attentionMask: await read<tf.Tensor2D>('attention_mask'),
        pixelValuesImages: await read<tf.Tensor4D>('pixel_values_images'),
        pixelValuesVideos: await read<tf.Tensor5D>('pixel_values_videos'),
      };
      const out = model.forward({ ...inputs, outputHiddenStates: true, outputVisionHiddenStates: true });
      const caseName = file.replace(/\.safetensors$/, '');
      for (const [stage, actual] of stages(out)) {
        if (!actual || !c.tensors.has(stage)) continue;
        const expected = await c.readTensor(stage);
        rows.push({ model: name, case: caseName, stage, ...maxDiff(actual, expected) });
        expected.dispose();
      }
      disposeOutput(out);
      for (const t of Object.values(inputs)) t?.dispose();
      await c.close();
    }
    model.dispose();
  }
  return rows;
}

export function formatTable(rows: ParityRow[]): string {
  const header = ['model', 'case', 'stage', 'max abs', 'max rel'];
  const body = rows.map((r) => [r.model, r.case, r.stage, r.maxAbs.toExponential(2), r.maxRel.toExponential(2)]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

const OPTIONS = {
  fixtures: { type: 'string' },
  model: { type: 'string', multiple: true },
  json: { type: 'boolean' },
  backend: { type: 'string' },
  ...WEIGHT_OPTIONS,
  help: { type: 'boolean', short: 'h' },
} as const;

export async function parityCommand(argv: string[], log: (line: string) => void): Promise<void> {
  const args = parse(argv, OPTIONS);
  if (args.help) return log(PARITY_HELP);
  await setBackend(args.backend as string | undefined);
  const rows = await parityReport((args.fixtures as string | undefined) ?? path.join('test', 'fixtures'), args.model as string[] | undefined, weightOptions(args));
  if (args.json) return log(JSON.stringify(rows, null, 1));
  log(formatTable(rows));
  const worst = rows.filter((r) => r.stage === 'logits').reduce((m, r) => Math.max(m, r.maxAbs), 0);
  log(`\n${rows.length} stages compared on ${tf.getBackend()}; worst logits max abs diff ${worst.toExponential(2)}`);
}
