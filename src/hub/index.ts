/** Loading by model id: the Hugging Face Hub and its local cache (shared with Python's huggingface_hub). */
export { resolveModel, MODEL_FILES, PROCESSOR_FILES, SINGLE_WEIGHTS, WEIGHTS_INDEX } from './resolve';
export type { DownloadProgress, ResolveOptions } from './resolve';
export { HubError } from './errors';
export type { HubErrorCode } from './errors';
export { hubCacheDir, hubToken, DEFAULT_ENDPOINT } from './settings';
