/** Small helpers over node:util parseArgs, so every subcommand reports bad arguments the same way. */
import { parseArgs, ParseArgsConfig } from 'node:util';
import { InputError } from '../errors';
import { GenerateOptions } from '../generation/generate';

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
