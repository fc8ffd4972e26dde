/** Public API of video-llava in Node (the browser bundle's entry is src/web/index.ts). */
export * from './api';
export { readVideoFrames, probeVideo } from './processing/video';
export { savePretrained, saveLoraAdapter, loadLoraAdapter } from './training/save';
export { resolveModel } from './hub';
export type { ResolveOptions } from './hub';
export { enableNativeMatmul, disableNativeMatmul, nativeMatmulStatus, nativeMatmulNotice, NATIVE_ENV, THREADS_ENV, DEFAULT_MIN_MACS } from './native';
export type { NativeMatmulOptions, NativeMatmulStatus } from './native';
