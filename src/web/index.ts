/**
 * video-llava in a web page: the same models, processor, tokenizer, chat template, generation and training code as in
 * Node (src/api.ts), on the browser's platform (src/platform/browser.ts): models over HTTP kept in Cache Storage,
 * media decoded by the browser, backends wasm, webgl and webgpu. Built by `npm run build:web` into
 * dist/web/video-llava.js (ESM) with the wasm binaries beside it.
 */
import * as tf from '@tensorflow/tfjs';

export * from '../api';
export { configureWasm, describeBackend } from '../platform/browser';
export { cacheStorage, clearModelCache, MODEL_CACHE_NAME } from '../platform/browser_cache';
export { platform } from '../platform';
export { tf };
