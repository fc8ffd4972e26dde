/** `video-llava convert`: between the original Video-LLaVA / LanguageBind layout and the Hugging Face layout. */
import { setBackend } from '../backend';
import { InputError } from '../errors';
import { convertCheckpoint } from '../models/video_llava/convert';
import { parse, required } from './args';

export const CONVERT_HELP = `video-llava convert --model SRC --out DIR [options]

Converts between the original checkpoint layout (PKU-YuanGroup/Video-LLaVA: LanguageBind/Video-LLaVA-7B with its
LanguageBind_Video_merge and LanguageBind_Image towers, pytorch_model*.bin) and the Hugging Face layout this
package and transformers use (config.json + model.safetensors).

original → hf (SRC has an LlavaLlamaForCausalLM config.json): the towers are taken as the original builder.py
takes them (config mm_video_tower / mm_image_tower: a directory next to SRC with that name, else a Hub id through
the cache); the video tower's temporal attention is KEPT (config field video_temporal_attention), unlike the
transformers conversion, which drops it. <image>/<video> become ids vocab_size / vocab_size+1 in the tokenizer.
hf → original: writes DIR/Video-LLaVA, DIR/LanguageBind_Video_merge and DIR/LanguageBind_Image (safetensors).

  --model SRC             the checkpoint to convert (directory or Hub id)
  --out DIR               where to write
  --to hf|original        target layout (default: the other one)
  --video-tower DIR|ID    the LanguageBind video tower (default: from SRC's config)
  --image-tower DIR|ID    the LanguageBind image tower (default: from SRC's config)
  --tower-weights repos|embedded
                          tower weights from the tower repositories (default, as builder.py) or the copies the
                          Video-LLaVA checkpoint carries
  --dtype float32|float16|bfloat16   stored dtype (default float32)
  --backend NAME          wasm (default), cpu or tensorflow

Example:
  video-llava convert --model LanguageBind/Video-LLaVA-7B --out video-llava-7b-temporal --dtype bfloat16 --backend cpu
`;

const OPTIONS = {
  model: { type: 'string' },
  out: { type: 'string' },
  to: { type: 'string' },
  'video-tower': { type: 'string' },
  'image-tower': { type: 'string' },
  'tower-weights': { type: 'string' },
  dtype: { type: 'string' },
  backend: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function choice<T extends string>(value: unknown, name: string, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!allowed.includes(value as T)) throw new InputError(`--${name}`, `expected one of ${allowed.join(', ')}, found "${String(value)}"`);
  return value as T;
}

export async function convertCommand(argv: string[], log: (line: string) => void): Promise<void> {
  const args = parse(argv, OPTIONS);
  if (args.help) return log(CONVERT_HELP);
  const src = required(args, 'model');
  const out = required(args, 'out');
  await setBackend(args.backend as string | undefined);
  const result = await convertCheckpoint(src, out, {
    to: choice(args.to, 'to', ['hf', 'original'] as const),
    videoTower: args['video-tower'] as string | undefined,
    imageTower: args['image-tower'] as string | undefined,
    towerWeights: choice(args['tower-weights'], 'tower-weights', ['repos', 'embedded'] as const),
    dtype: choice(args.dtype, 'dtype', ['float32', 'float16', 'bfloat16'] as const),
  });
  for (const note of result.notes) process.stderr.write(`note: ${note}\n`);
  log(`converted ${src} to the ${result.to} layout: ${result.dirs.join(', ')}`);
}
