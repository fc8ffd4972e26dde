/**
 * quantization_config: parsed as transformers' BitsAndBytesConfig (defaults, validation) and written back
 * exactly as save_pretrained writes it, checked against the config.json files transformers 5.24 saved for the
 * quantized tester models (test/fixtures/bnb/tester-nf4-dq, tester-int8).
 */
import * as fs from 'fs';
import * as path from 'path';
import { ConfigError } from '../../src/errors';
import {
  BITS_AND_BYTES_DEFAULTS,
  bitsAndBytesConfigToJson,
  parseBitsAndBytesConfig,
  quantizationMethod,
} from '../../src/quantization';
import { toPythonJson } from '../../src/training/json';
import { BNB } from './helpers';

function savedConfig(model: string): { text: string; block: string; raw: Record<string, unknown> } {
  const text = fs.readFileSync(path.join(BNB, model, 'config.json'), 'utf8');
  const raw = JSON.parse(text).quantization_config as Record<string, unknown>;
  const start = text.indexOf('"quantization_config": ') + '"quantization_config": '.length;
  const end = text.indexOf('\n  }', start) + '\n  }'.length;
  return { text, block: text.slice(start, end), raw };
}

test('the NF4 double-quant checkpoint: fields, and to_dict() written back byte for byte', () => {
  const saved = savedConfig('tester-nf4-dq');
  const cfg = parseBitsAndBytesConfig(saved.raw, 'config.json');
  expect(cfg).toEqual({
    ...BITS_AND_BYTES_DEFAULTS,
    load_in_4bit: true,
    bnb_4bit_quant_type: 'nf4',
    bnb_4bit_use_double_quant: true,
  });
  expect(quantizationMethod(cfg)).toBe('nf4');
  expect(toPythonJson(bitsAndBytesConfigToJson(cfg), 1)).toBe(saved.block);
});

test('defaults equal transformers: {load_in_8bit: true} alone gives the int8 checkpoint config', () => {
  const saved = savedConfig('tester-int8');
  const cfg = parseBitsAndBytesConfig({ load_in_8bit: true });
  expect(cfg).toEqual(parseBitsAndBytesConfig(saved.raw));
  expect(quantizationMethod(cfg)).toBe('llm_int8');
  expect(toPythonJson(bitsAndBytesConfigToJson(cfg), 1)).toBe(saved.block);
});

test('aliases and legacy configs without quant_method', () => {
  const cfg = parseBitsAndBytesConfig({ load_in_4bit: true, bnb_4bit_compute_dtype: 'half', llm_int8_skip_modules: ['mm_projector'] });
  expect(cfg.bnb_4bit_compute_dtype).toBe('float16');
  expect(cfg.llm_int8_skip_modules).toEqual(['mm_projector']);
});

test.each([
  [{ load_in_4bit: true, load_in_8bit: true }, 'quantization_config.load_in_4bit', /both true/],
  [{}, 'quantization_config.load_in_4bit', /nothing is quantized/],
  [{ load_in_4bit: 'yes' }, 'quantization_config.load_in_4bit', /expected true or false, found "yes"/],
  [{ load_in_4bit: true, quant_method: 'gptq' }, 'quantization_config.quant_method', /not a bitsandbytes/],
  [{ load_in_4bit: true, bnb_4bit_quant_type: 'int4' }, 'quantization_config.bnb_4bit_quant_type', /one of fp4, nf4/],
  [{ load_in_4bit: true, bnb_4bit_quant_storage: 'int4' }, 'quantization_config.bnb_4bit_quant_storage', /one of/],
  [{ load_in_4bit: true, bnb_4bit_compute_dtype: 'float8' }, 'quantization_config.bnb_4bit_compute_dtype', /found "float8"/],
  [{ load_in_4bit: true, llm_int8_skip_modules: 'lm_head' }, 'quantization_config.llm_int8_skip_modules', /list of strings/],
  [{ load_in_8bit: true, llm_int8_threshold: '6' }, 'quantization_config.llm_int8_threshold', /expected a number/],
])('%j is rejected naming %s', (raw, field, message) => {
  let err: unknown;
  try {
    parseBitsAndBytesConfig(raw as Record<string, unknown>, 'config.json');
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ConfigError);
  expect((err as ConfigError).field).toBe(field);
  expect((err as Error).message).toMatch(message);
  expect((err as Error).message).toMatch(/^config.json: /);
});
