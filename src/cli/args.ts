/** Small helpers over node:util parseArgs, so every subcommand reports bad arguments the same way. */
import { parseArgs, ParseArgsConfig } from 'node:util';
import { InputError } from '../errors';
import { GenerateOptions } from '../generation/generate';
import { FormatOptions, LoadDType } from '../models/video_llava/weight_formats';
import { QuantizationOptions } from '../models/video_llava/quantized';

export type Options = NonNullable<ParseArgsConfig['options']>;

export function parse(argv: string[], options: Options): Record<string, string | boolean | string[] | undefined> {
  try {
    return parseArgs({ args: argv, options, allowPositionals: false, strict: true }).values as Record<
      string,
      string | boolean | string[] | undefined
    >;
  } catch (e) {
    throw new InputError('arguments', (e as Error).message.replace(/\. To specify.*$/s, ''));
  }
}

export function required(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || v === '') throw new InputError(`--${name}`, 'is required');
  return v;
}

export function intOption(values: Record<string, unknown>, name: string, fallback: number, min = 0): number {
  const v = values[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InputError(`--${name}`, `expected an integer ≥ ${min}, found "${String(v)}"`);
  return n;
}

export function numberOption(values: Record<string, unknown>, name: string): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InputError(`--${name}`, `expected a number, found "${String(v)}"`);
  return n;
}

/** The sampling flags shared by `generate` and `forward --generate`. */
export const SAMPLING_OPTIONS = {
  'do-sample': { type: 'boolean' },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  seed: { type: 'string' },
  'repetition-penalty': { type: 'string' },
} as const;

export function samplingOptions(values: Record<string, unknown>): Partial<GenerateOptions> {
  return {
    doSample: values['do-sample'] === true,
    temperature: numberOption(values, 'temperature'),
    topK: values['top-k'] === undefined ? undefined : intOption(values, 'top-k', 0),
    topP: numberOption(values, 'top-p'),
    seed: values.seed === undefined ? undefined : intOption(values, 'seed', 0),
    repetitionPenalty: numberOption(values, 'repetition-penalty'),
  };
}

/** The weight-format flags shared by the commands that load a model. */
export const WEIGHT_OPTIONS = {
  dtype: { type: 'string' },
  'compute-dtype': { type: 'string' },
  'load-in-4bit': { type: 'boolean' },
  'load-in-8bit': { type: 'boolean' },
  'bnb-4bit-quant-type': { type: 'string' },
  'bnb-4bit-use-double-quant': { type: 'boolean' },
  'bnb-4bit-block-size': { type: 'string' },
  'llm-int8-skip-modules': { type: 'string' },
} as const;

export const WEIGHT_HELP = `  --dtype D               auto (default: 16-bit weights stay as stored, outside the tensor heap), float32,
                          bfloat16 or float16 (large weights converted), like transformers' torch_dtype
  --compute-dtype D       float32 (default) or bf16: products with bfloat16 inputs and float32 accumulation
                          (AVX512-BF16 / AMX where the CPU has them), as torch_dtype=torch.bfloat16 computes
  --load-in-4bit          quantize every Linear but lm_head to 4 bits at load, as bitsandbytes does
                          (--bnb-4bit-quant-type nf4|fp4, default fp4; --bnb-4bit-use-double-quant;
                          --bnb-4bit-block-size N, default 64); checkpoints saved quantized load as saved
  --load-in-8bit          quantize them to 8 bits (LLM.int8 weights with row scales) instead
  --llm-int8-skip-modules a,b   module name patterns to keep unquantized (default lm_head)`;

export function weightOptions(values: Record<string, unknown>): FormatOptions & { quantization?: QuantizationOptions } {
  const compute = values['compute-dtype'] as string | undefined;
  const computeDtype = compute === 'bf16' ? 'bfloat16' : compute === 'fp32' ? 'float32' : (compute as FormatOptions['computeDtype']);
  const four = values['load-in-4bit'] === true;
  const eight = values['load-in-8bit'] === true;
  if (four && eight) throw new InputError('--load-in-4bit', 'cannot be combined with --load-in-8bit');
  const skip = values['llm-int8-skip-modules'] as string | undefined;
  const quantization: QuantizationOptions | undefined =
    four || eight
      ? {
          bits: four ? 4 : 8,
          type: values['bnb-4bit-quant-type'] as QuantizationOptions['type'],
          doubleQuant: values['bnb-4bit-use-double-quant'] === true,
          blockSize: values['bnb-4bit-block-size'] === undefined ? undefined : intOption(values, 'bnb-4bit-block-size', 64, 1),
          computeDtype,
          skipModules: skip === undefined ? undefined : skip.split(',').map((p) => p.trim()).filter((p) => p !== ''),
        }
      : undefined;
  return { dtype: values.dtype as LoadDType | undefined, computeDtype, quantization };
}
