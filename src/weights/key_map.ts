/**
 * The one table of checkpoint key renames. Module paths follow the current transformers layout
 * of the pinned version, 5.24 (`model.language_model.*`, `model.image_tower.embeddings.*`, `lm_head.*`).
 * Checkpoints use the legacy top-level names on the left (save_pretrained still writes them), and those
 * written before transformers 5 (the published LanguageBind/Video-LLaVA-7B-hf among them) also put each
 * tower's weights under `vision_model.`.
 */
const LEGACY_TO_CURRENT: Array<[string, string]> = [
  ['language_model.model.', 'model.language_model.'],
  ['language_model.lm_head.', 'lm_head.'],
  ['language_model.', 'model.language_model.'], // a bare VideoLlavaModel checkpoint
  ['image_tower.', 'model.image_tower.'],
  ['video_tower.', 'model.video_tower.'],
  ['multi_modal_projector.', 'model.multi_modal_projector.'],
];

/** Maps a checkpoint key to the module path; keys already in the current layout pass through. */
export function toModulePath(key: string): string {
  let path = key;
  if (!key.startsWith('model.') && !key.startsWith('lm_head.')) {
    const rule = LEGACY_TO_CURRENT.find(([from]) => key.startsWith(from));
    if (rule) path = rule[1] + key.slice(rule[0].length);
  }
  // transformers ≥ 5 flattened CLIPVisionModel: `<tower>.vision_model.x` is now `<tower>.x`.
  return path.replace(/^model\.(image|video)_tower\.vision_model\./, 'model.$1_tower.');
}

/** Maps a module path to the key save_pretrained of transformers 5.24 writes. */
export function toLegacyKey(path: string): string {
  if (path.startsWith('lm_head.')) return `language_model.${path}`;
  if (path.startsWith('model.language_model.')) return `language_model.model.${path.slice('model.language_model.'.length)}`;
  if (path.startsWith('model.')) return path.slice('model.'.length);
  return path;
}

/** Buffers some checkpoints carry that are recomputed here, never loaded. */
export function isIgnoredKey(key: string): boolean {
  return key.endsWith('.rotary_emb.inv_freq') || key.endsWith('embeddings.position_ids');
}

/**
 * The original layouts (PKU-YuanGroup/Video-LLaVA and the LanguageBind tower repositories), a table of their own
 * since those checkpoints are another model class: `LlavaLlamaForCausalLM` puts the Llama decoder at `model.*`,
 * the projector at `model.mm_projector.{0,2}` (an nn.Sequential with the GELU at index 1) and copies of the towers
 * at `model.<tower>.<tower>.*`; a tower repository (`LanguageBindVideo` / `LanguageBindImage`, a CLIP pair) keeps
 * the vision tower at `vision_model.*`. Prefixes are tried in order.
 */
const ORIGINAL_TO_CURRENT: Array<[string, string]> = [
  ['model.video_tower.video_tower.', 'model.video_tower.'],
  ['model.image_tower.image_tower.', 'model.image_tower.'],
  ['model.mm_projector.0.', 'model.multi_modal_projector.linear_1.'],
  ['model.mm_projector.2.', 'model.multi_modal_projector.linear_2.'],
  ['model.', 'model.language_model.'],
  ['lm_head.', 'lm_head.'],
];

/** A key of the original Video-LLaVA checkpoint → module path (null for keys of no known part). */
export function originalToModulePath(key: string): string | null {
  const rule = ORIGINAL_TO_CURRENT.find(([from]) => key.startsWith(from));
  return rule ? rule[1] + key.slice(rule[0].length) : null;
}

/** Module path → the original Video-LLaVA checkpoint's key. */
export function toOriginalKey(path: string): string {
  const rule = ORIGINAL_TO_CURRENT.find(([, to]) => path.startsWith(to));
  if (!rule) throw new Error(`no original key for ${path}`);
  return rule[0] + path.slice(rule[1].length);
}

/** A key of a LanguageBind tower repository → module path under `tower`; null for the text half of the pair. */
export function towerToModulePath(key: string, tower: 'video_tower' | 'image_tower'): string | null {
  return key.startsWith('vision_model.') ? `model.${tower}.${key.slice('vision_model.'.length)}` : null;
}
