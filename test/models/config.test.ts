/** config.json → typed config, defaults filled exactly as transformers 5.24's config classes fill them. */
import * as fs from 'fs';
import * as path from 'path';
import { ConfigError } from '../../src/errors';
import { parseVideoLlavaConfig, VideoLlavaConfig } from '../../src/models/video_llava/config';
import { FIXTURES } from '../helpers/fixtures';

const DIR = path.join(FIXTURES, 'configs');
const load = (f: string) => JSON.parse(fs.readFileSync(path.join(DIR, f), 'utf8'));
const files = fs.readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();

/** Our parsed config in the shape reference/gen_configs.py records. */
function view(c: VideoLlavaConfig): Record<string, unknown> {
  const { rope, ...text } = c.text_config;
  return {
    vision_config: c.vision_config,
    text_config: { ...text, rope },
    image_token_index: c.image_token_index,
    video_token_index: c.video_token_index,
    projector_hidden_act: c.projector_hidden_act,
    vision_feature_select_strategy: c.vision_feature_select_strategy,
    vision_feature_layer: c.vision_feature_layer,
    multimodal_projector_bias: c.multimodal_projector_bias,
    tie_word_embeddings: c.tie_word_embeddings,
    pad_token_id: c.pad_token_id,
  };
}

test('fixtures exist', () => expect(files.length).toBeGreaterThanOrEqual(6));

test.each(files.filter((f) => !f.startsWith('error_')))('%s: every field equals what Python fills', (file) => {
  const { input, expected } = load(file);
  expect(view(parseVideoLlavaConfig(input))).toEqual(expected);
});

test.each(files.filter((f) => f.startsWith('error_')))('%s: rejected as Python rejects it', (file) => {
  const { input } = load(file);
  expect(() => parseVideoLlavaConfig(input)).toThrow(ConfigError);
});
