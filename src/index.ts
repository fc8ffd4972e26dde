/** Public API of video-llava. */
export * from './errors';
export { setBackend, resolveBackendName, BACKENDS, DEFAULT_BACKEND, BACKEND_ENV } from './backend';
export type { BackendName } from './backend';
export { Module, ModuleList, Parameter } from './layers/module';
export type { ForwardHook, ForwardPreHook, HookHandle } from './layers/module';
export { VideoLlavaForConditionalGeneration, VideoLlavaModel, disposeOutput } from './models/video_llava/modeling';
export type { VideoLlavaForwardInput, VideoLlavaForwardOutput, IntMatrix } from './models/video_llava/modeling';
export { loadVideoLlavaConfig, parseVideoLlavaConfig } from './models/video_llava/config';
export type { VideoLlavaConfig } from './models/video_llava/config';
export type { LoadOptions, LoadProgress } from './models/video_llava/loading';
export type { ClipVisionConfig } from './models/clip/config';
export type { LlamaConfig } from './models/llama/config';
export { DynamicCache } from './generation/cache';
export type { KVCache } from './generation/cache';
export { SafetensorsFile, writeSafetensors } from './weights/safetensors';
export { Checkpoint } from './weights/checkpoint';
export { toModulePath, toLegacyKey } from './weights/key_map';
