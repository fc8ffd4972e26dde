/**
 * The processor of a checkpoint in the original Video-LLaVA layout, which ships a tokenizer but no processor files:
 * its tokenizer with <image> / <video> registered at the model's placeholder ids (past the 32000-row vocabulary),
 * the original LanguageBind video pipeline (./languagebind.ts), and CLIP image settings at the tower's size.
 * Images go through the HF (Pillow) image pipeline: the original's tensor bicubic resize is not reproduced.
 */
import { ConfigError } from '../errors';
import { IMAGE_PREPROCESSOR_DEFAULTS } from './image';
import { PROCESSOR_DEFAULTS, VideoLlavaProcessor } from './processor';
import { LlamaTokenizer } from './tokenizer';

export interface OriginalProcessorSettings {
  imageTokenId: number;
  videoTokenId: number;
  patchSize: number;
  imageSize: number;
  strategy: 'default' | 'full';
}

export function originalProcessor(dir: string, s: OriginalProcessorSettings): VideoLlavaProcessor {
  const tokenizer = LlamaTokenizer.fromPretrained(dir);
  for (const [token, id] of [['<image>', s.imageTokenId], ['<video>', s.videoTokenId]] as const) {
    if (tokenizer.tokenToId(token) === undefined) tokenizer.addTokens([{ content: token, special: true }]);
    if (tokenizer.tokenToId(token) !== id) {
      throw new ConfigError('tokenizer', `${token} gets id ${tokenizer.tokenToId(token)} in the tokenizer of ${dir} but the model expects ${id}; convert the checkpoint (video-llava convert) and use the converted folder`);
    }
  }
  const size = s.imageSize;
  const image = { ...IMAGE_PREPROCESSOR_DEFAULTS, size: { shortest_edge: size }, crop_size: { height: size, width: size } };
  const config = { ...PROCESSOR_DEFAULTS, patch_size: s.patchSize, vision_feature_select_strategy: s.strategy, video_preprocessing: 'languagebind' as const };
  return new VideoLlavaProcessor(tokenizer, image, config);
}
