/**
 * `video-llava preprocess`: prompts, images and videos in, the processor's tensors out under the Hugging Face
 * names, ready for `video-llava forward --inputs` or for comparison with Python's processor.
 */
import * as tf from '@tensorflow/tfjs';
import { setBackend } from '../backend';
import { InputError } from '../errors';
import { VideoLlavaProcessor, disposeProcessorOutput } from '../processing/processor';
import { TensorEntry, writeSafetensors } from '../weights/safetensors';
import { intOption, parse, required } from './args';

export const PREPROCESS_HELP = `video-llava preprocess --model DIR --prompt TEXT --out OUT.safetensors [options]

Runs the Video-LLaVA processor (as transformers' VideoLlavaProcessor) and writes:
  input_ids             [B, L] I64, placeholders expanded, rows left-padded to the longest (padding=True)
  attention_mask        [B, L] I64
  pixel_values_images   [N_images, 3, H, W] F32     (when --image is given)
  pixel_values_videos   [N_videos, T, 3, H, W] F32  (when --video is given)
  frame_indices         [N_videos, T] I64, the frame numbers sampled from each video

Options:
  --model DIR           processor folder (tokenizer files, processor_config.json / preprocessor_config.json)
  --prompt TEXT         one prompt per row, repeatable; "<image>" / "<video>" mark where media go
  --image FILE          repeatable; fills the <image> placeholders in order (row 0 first)
  --video FILE          repeatable; fills the <video> placeholders in order
  --num-frames N        frames sampled per video (default 8)
  --max-length N        truncate rows to N tokens (an error if that cuts placeholders)
  --backend NAME        wasm (default), cpu or tensorflow
`;

const OPTIONS = {
  model: { type: 'string' },
  prompt: { type: 'string', multiple: true },
  image: { type: 'string', multiple: true },
  video: { type: 'string', multiple: true },
  'num-frames': { type: 'string' },
  'max-length': { type: 'string' },
  out: { type: 'string' },
  backend: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function list(values: Record<string, unknown>, name: string): string[] {
  const v = values[name];
  return Array.isArray(v) ? (v as string[]) : [];
}

/** Row-major ints of a [B, L] list as one Int32Array (written as I64). */
function flatten(rows: number[][]): Int32Array {
  const out = new Int32Array(rows.length * (rows[0]?.length ?? 0));
  rows.forEach((r, i) => out.set(r, i * r.length));
  return out;
}

export async function preprocessCommand(argv: string[], log: (line: string) => void): Promise<void> {
  const args = parse(argv, OPTIONS);
  if (args.help) return log(PREPROCESS_HELP);
  const modelDir = required(args, 'model');
  const outPath = required(args, 'out');
  const prompts = list(args, 'prompt');
  if (prompts.length === 0) throw new InputError('--prompt', 'is required (repeat it for a batch of prompts)');
  const images = list(args, 'image');
  const videos = list(args, 'video');
  const numFrames = intOption(args, 'num-frames', 8, 1);
  const maxLength = args['max-length'] === undefined ? undefined : intOption(args, 'max-length', 0, 1);
  await setBackend(args.backend as string | undefined);

  const processor = await VideoLlavaProcessor.fromPretrained(modelDir);
  const out = await processor.call(prompts, {
    images: images.length > 0 ? images : undefined,
    videos: videos.length > 0 ? videos : undefined,
    numFrames,
    padding: true,
    maxLength,
  });
  try {
    const [B, L] = [out.inputIds.length, out.inputIds[0].length];
    const tensors: TensorEntry[] = [
      { name: 'input_ids', dtype: 'I64', shape: [B, L], data: flatten(out.inputIds) },
      { name: 'attention_mask', dtype: 'I64', shape: [B, L], data: flatten(out.attentionMask) },
    ];
    const pixels = (name: string, t: tf.Tensor | undefined) => {
      if (t) tensors.push({ name, dtype: 'F32', shape: t.shape, data: t.dataSync() as Float32Array });
    };
    pixels('pixel_values_images', out.pixelValuesImages);
    pixels('pixel_values_videos', out.pixelValuesVideos);
    if (out.frameIndices) {
      const T = out.frameIndices[0].length;
      tensors.push({ name: 'frame_indices', dtype: 'I64', shape: [out.frameIndices.length, T], data: flatten(out.frameIndices) });
    }
    await writeSafetensors(outPath, tensors, { producer: 'video-llava preprocess' });
    const shapes = tensors.map((t) => `${t.name} [${t.shape.join(', ')}]`).join(', ');
    log(`wrote ${tensors.length} tensors to ${outPath}: ${shapes}`);
  } finally {
    disposeProcessorOutput(out);
  }
}
