/**
 * Plain constants of the native interfaces, apart from the modules that load native code, so that shared code
 * (src/weights/stored.ts, ./kernels.ts) can use them in a browser build, where nothing native loads.
 */

/** Format codes of the native side (native/src/vl.h). */
export const FORMAT_CODES = { float32: 0, bfloat16: 1, float16: 2, q4: 3, int8: 4 } as const;
export type NativeFormat = keyof typeof FORMAT_CODES;
export const COMPUTE_CODES = { float32: 0, bfloat16: 1 } as const;
export type ComputeDType = keyof typeof COMPUTE_CODES;

/** CBLAS_TRANSPOSE values (cblas.h). */
export const NO_TRANS = 111;
export const TRANS = 112;
