/**
 * `video-llava forward`: tensors in, tensors out, under the Hugging Face names, so anyone can compare
 * a checkpoint against Python with their own tools.
 */
import * as tf from '@tensorflow/tfjs';
import { setBackend } from '../backend';
import { InputError } from '../errors';
import { VideoLlavaForConditionalGeneration, disposeOutput } from '../models/video_llava/modeling';
import { SafetensorsFile, TensorEntry, writeSafetensors } from '../weights/safetensors';
import { GenerateResult, generate, loadGenerationConfig } from '../generation/generate';
import { SAMPLING_OPTIONS, WEIGHT_HELP, WEIGHT_OPTIONS, intOption, parse, required, samplingOptions, weightOptions } from './args';

export const FORWARD_HELP = `video-llava forward --model DIR --inputs IN.safetensors --out OUT.safetensors [options]

Runs one forward pass and writes the logits (float32) to OUT under the name "logits".

Inputs (read from IN by their Hugging Face names):
  input_ids             [B, L] I64 or I32, placeholders already expanded (required)
  attention_mask        [B, L] I64 or I32 (default: all ones)
  position_ids          [B, L] (default: 0..L-1 for every row, as a plain Python forward)
  pixel_values_images   [N, 3, H, W] float
  pixel_values_videos   [N, T, 3, H, W] float

Options:
  --generate N          also generate N new tokens (greedy unless --do-sample) and write them as
                        generated_ids [B, N] (I64, new tokens only), as Python's generate() returns them
  --ignore-eos          with --generate: never stop at eos (as generate(..., eos_token_id=None))
  --do-sample, --temperature X, --top-k N, --top-p X, --seed N, --repetition-penalty X
                        sampling options for --generate
  --hidden-states       also write decoder.hidden_states.<k>, image_features, video_features,
                        image_tower.hidden_states.<k> and video_tower.hidden_states.<k>
  --backend NAME        wasm (default), cpu or tensorflow
${WEIGHT_HELP}
`;

const OPTIONS = {
  model: { type: 'string' },
  inputs: { type: 'string' },
  out: { type: 'string' },
  'hidden-states': { type: 'boolean' },
  generate: { type: 'string' },
  'ignore-eos': { type: 'boolean' },
  ...SAMPLING_OPTIONS,
  ...WEIGHT_OPTIONS,
  backend: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

async function readOptional<T extends tf.Tensor>(file: SafetensorsFile, name: string): Promise<T | undefined> {
  return file.tensors.has(name) ? ((await file.readTensor(name)) as T) : undefined;
}

export async function forwardCommand(argv: string[], log: (line: string) => void): Promise<void> {
  const args = parse(argv, OPTIONS);
  if (args.help) return log(FORWARD_HELP);
  const modelDir = required(args, 'model');
  const inputsPath = required(args, 'inputs');
  const outPath = required(args, 'out');
  await setBackend(args.backend as string | undefined);

  const inputs = await SafetensorsFile.open(inputsPath);
  const owned: tf.Tensor[] = [];
  try {
    if (!inputs.tensors.has('input_ids')) throw new InputError(inputsPath, 'has no tensor named "input_ids"');
    const model = await VideoLlavaForConditionalGeneration.fromPretrained(modelDir, weightOptions(args));
    const inputIds = (await inputs.readTensor('input_ids')) as tf.Tensor2D;
    const attentionMask = await readOptional<tf.Tensor2D>(inputs, 'attention_mask');
    const positionIds = await readOptional<tf.Tensor2D>(inputs, 'position_ids');
    const pixelValuesImages = await readOptional<tf.Tensor4D>(inputs, 'pixel_values_images');
    const pixelValuesVideos = await readOptional<tf.Tensor5D>(inputs, 'pixel_values_videos');
    for (const t of [inputIds, attentionMask, positionIds, pixelValuesImages, pixelValuesVideos]) if (t) owned.push(t);
    const hidden = args['hidden-states'] === true;
    const out = model.forward({
      inputIds,
      attentionMask,
      positionIds,
      pixelValuesImages,
      pixelValuesVideos,
      outputHiddenStates: hidden,
      outputVisionHiddenStates: hidden,
    });
    const tensors: Record<string, tf.Tensor> = { logits: out.logits };
    if (hidden) {
      out.hiddenStates?.forEach((h, k) => (tensors[`decoder.hidden_states.${k}`] = h));
      if (out.imageHiddenStates) tensors.image_features = out.imageHiddenStates;
      if (out.videoHiddenStates) tensors.video_features = out.videoHiddenStates;
      out.imageTowerHiddenStates?.forEach((h, k) => h && (tensors[`image_tower.hidden_states.${k}`] = h));
      out.videoTowerHiddenStates?.forEach((h, k) => h && (tensors[`video_tower.hidden_states.${k}`] = h));
    }
    let generated: GenerateResult | undefined;
    if (args.generate !== undefined) {
      generated = await generate(model, { inputIds, attentionMask, pixelValuesImages, pixelValuesVideos }, {
        generationConfig: await loadGenerationConfig(modelDir),
        maxNewTokens: intOption(args, 'generate', 0),
        minNewTokens: args['ignore-eos'] ? intOption(args, 'generate', 0) : undefined,
        eosTokenId: args['ignore-eos'] ? null : undefined,
        ...samplingOptions(args),
      });
    }
    const entries: TensorEntry[] = Object.entries(tensors).map(([name, t]) => ({ name, dtype: 'F32', shape: t.shape, data: t.dataSync() }));
    if (generated) {
      const ids = generated.newTokens;
      entries.push({ name: 'generated_ids', dtype: 'I64', shape: [ids.length, ids[0]?.length ?? 0], data: Int32Array.from(ids.flat()) });
    }
    await writeSafetensors(outPath, entries, { producer: 'video-llava forward', backend: tf.getBackend() });
    disposeOutput(out);
    model.dispose();
    log(`wrote ${entries.length} tensors to ${outPath} (logits [${out.logits.shape.join(', ')}])`);
  } finally {
    tf.dispose(owned);
    await inputs.close();
  }
}
