/**
 * The API shared by Node (src/index.ts) and the browser bundle (src/web/index.ts): models, processing, generation,
 * training. Each entry adds what only its platform has.
 */
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
export { VideoLlavaProcessor, disposeProcessorOutput, parseProcessorConfig, PROCESSOR_DEFAULTS } from './processing/processor';
export type { ProcessorConfig, ProcessorCallOptions, ProcessorOutput, VideoInput } from './processing/processor';
export { LlamaTokenizer, DecodeStream } from './processing/tokenizer';
export { applyChatTemplate, loadChatTemplate } from './processing/chat_template';
export type { ChatMessage, ChatContent } from './processing/chat_template';
export { decodeImage, preprocessImages, loadImagePreprocessorConfig } from './processing/image';
export type { RawImage, ImageInput, ImagePreprocessorConfig } from './processing/image';
export { causalLmLoss, countLabelTokens } from './training/loss';
export { freeze, unfreeze, setTrainable, countParameters, selectParameters, trainableSummary } from './training/params';
export { valueAndGrads, registerTrainingKernels, disposeGrads } from './training/grad';
export { AdamW, clipGradNorm, GradientAccumulator, trainStep } from './training/optimizer';
export { addLora, mergeLora, unloadLora, loraParameters } from './training/lora';
export { generate, generateStream, loadGenerationConfig } from './generation/generate';
export type { GenerateOptions, GenerateResult, GenerateInputs, GenerateTimings, TokenEvent } from './generation/generate';
export { BlockKVCache } from './generation/cache';
export { sampleFrameIndices } from './processing/frames';
export type { VideoSource, VideoFrames, ReadVideoOptions } from './processing/frames';
export { HubError } from './hub/errors';
export type { DownloadProgress } from './hub/types';
export { MODEL_FILES, PROCESSOR_FILES, isModelFiles } from './platform';
export type { ByteSource, ModelFiles, ModelSourceOptions } from './platform';
export { httpModelFiles, openHttpFile } from './platform/http';
export type { ByteCache, HttpOptions } from './platform/http';
export { buildPrompt } from './processing/prompt';
