/** The options and progress of resolving a Hub model (./resolve.ts), as plain types that shared code can name. */
import type { Fetch } from './http';
import type { LockOptions } from './lock';

export interface DownloadProgress {
  /** Path of the file in the repository. */
  file: string;
  /** Bytes of `file` on disk (resumed bytes included) and its size. */
  fileBytes: number;
  fileTotal: number;
  /** The same over every file this call downloads. */
  bytes: number;
  total: number;
  /** Network bytes received by this call per second since its first download started. */
  bytesPerSecond: number;
}

export interface ResolveOptions {
  /** Branch, tag or commit hash (default "main"). */
  revision?: string;
  /** Hub cache root (default HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub). */
  cacheDir?: string;
  /** Access token for gated or private repositories (default HF_TOKEN, or the `hf auth login` token file). */
  token?: string;
  /** Hub or mirror URL (default HF_ENDPOINT, else https://huggingface.co). */
  endpoint?: string;
  /** Never touch the network (default HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE). */
  offline?: boolean;
  onProgress?: (progress: DownloadProgress) => void;
  /** fnmatch patterns of the files to fetch, instead of the files a Video-LLaVA model needs. */
  allowPatterns?: string[];
  /** fetch implementation (a proxy, extra headers). */
  fetch?: Fetch;
  /** Lock tuning (tests). */
  lock?: LockOptions;
}
