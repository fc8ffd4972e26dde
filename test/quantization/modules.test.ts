/**
 * Which Linear modules get quantized, against transformers 5.24 on the tester model
 * (test/fixtures/bnb/modules.json: for each llm_int8_skip_modules, the modules_to_not_convert transformers derived
 * and the Linear modules it replaced by bnb Linear4bit).
 */
import * as fs from 'fs';
import * as path from 'path';
import { ConfigError } from '../../src/errors';
import { VIDEO_LLAVA_DEFAULT_SKIP, isQuantizedModule, modulesToNotConvert, quantizedModules } from '../../src/quantization';
import { BNB } from './helpers';

interface ModulesFixture {
  linear_paths: string[];
  keep_in_fp32_modules: string[] | null;
  cases: Array<{ llm_int8_skip_modules: string[] | null; modules_to_not_convert: string[]; quantized: string[] }>;
}

const fixture = JSON.parse(fs.readFileSync(path.join(BNB, 'modules.json'), 'utf8')) as ModulesFixture;

test('Video-LLaVA keeps no module in float32 and skips lm_head by default', () => {
  expect(fixture.keep_in_fp32_modules).toEqual([]);
  expect(fixture.cases[0].llm_int8_skip_modules).toBeNull();
  expect(fixture.cases[0].modules_to_not_convert).toEqual([...VIDEO_LLAVA_DEFAULT_SKIP]);
});

test.each(fixture.cases.map((c) => [JSON.stringify(c.llm_int8_skip_modules), c] as const))(
  'llm_int8_skip_modules %s: same modules_to_not_convert and quantized modules as transformers',
  (_label, c) => {
    const cfg = { llm_int8_skip_modules: c.llm_int8_skip_modules };
    expect([...modulesToNotConvert(cfg)].sort()).toEqual(c.modules_to_not_convert);
    expect(quantizedModules(fixture.linear_paths, cfg)).toEqual(c.quantized);
  },
);

test('boundaries: prefix stops at a module boundary, regex anchored at the start, plain suffix', () => {
  expect(isQuantizedModule('model.language_model.layers.11.mlp.up_proj', ['model.language_model.layers.1'])).toBe(true);
  expect(isQuantizedModule('model.language_model.layers.1.mlp.up_proj', ['model.language_model.layers.1'])).toBe(false);
  expect(isQuantizedModule('model.language_model.layers.0.mlp.gate_proj', ['mlp.gate'])).toBe(true);
  expect(isQuantizedModule('model.language_model.layers.0.mlp.gate_proj', ['gate_proj'])).toBe(false);
  expect(() => isQuantizedModule('lm_head', ['('])).toThrow(ConfigError);
});
