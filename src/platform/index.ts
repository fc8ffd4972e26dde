/**
 * The one module that knows which platform this is. Shared code (models, processing, generation, training) asks
 * `platform` for files, media decoding, memory and native code instead of importing fs, sharp, ffmpeg or the addon.
 *
 * This file exports Node's implementation; the browser bundle (scripts/build-web.js) resolves './node' here to
 * './browser' instead, so no Node-only module is ever part of it.
 */
export { platform } from './node';
export type { ModelSourceOptions, Platform } from './types';
export { MODEL_FILES, PROCESSOR_FILES, SINGLE_WEIGHTS, WEIGHTS_INDEX, isModelFiles } from './files';
export type { ByteSource, ModelFiles } from './files';
