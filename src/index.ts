/** Public API of video-llava in Node (the browser bundle's entry is src/web/index.ts). */
export * from './api';
export { readVideoFrames, probeVideo } from './processing/video';
export { savePretrained, saveLoraAdapter, loadLoraAdapter } from './training/save';
export { resolveModel } from './hub';
export type { ResolveOptions } from './hub';
export { enableNativeMatmul, disableNativeMatmul, nativeMatmulStatus, nativeMatmulNotice, NATIVE_ENV, THREADS_ENV, DEFAULT_MIN_MACS } from './native';
export type { NativeMatmulOptions, NativeMatmulStatus } from './native';
export { parseBitsAndBytesConfig, quantize4bit, dequantize4bit, dequantize4bitRows, quantizeInt8, dequantizeInt8, fourBitFromTensors, fourBitToTensors, int8FromTensors, int8ToTensors } from './quantization';
export type { BitsAndBytesConfig, FourBitState, FourBitType, Int8State } from './quantization';
export { ClipVisionModel } from './models/clip/modeling';
export { loadOriginalVideoLlava, loadLanguageBindTower, expandOriginalIds, ORIGINAL_IMAGE_TOKEN_INDEX } from './models/video_llava/original';
export type { OriginalLoadOptions, ExpandedIds } from './models/video_llava/original';
export { convertCheckpoint } from './models/video_llava/convert';
export type { ConvertOptions, ConvertResult } from './models/video_llava/convert';
export { TorchCheckpoint, TorchCheckpointFile } from './weights/torch_checkpoint';
export { originalFrameIndices, languageBindTransform, preprocessLanguageBindVideos } from './processing/languagebind';
export type { HorizontalFlipOptions } from './processing/languagebind';
export { originalProcessor } from './processing/original_processor';
