// Every test file runs on the backend named by VIDEO_LLAVA_BACKEND (default: wasm), with the stock matMul
// kernels unless VIDEO_LLAVA_NATIVE=1 (OpenBLAS via src/native); CI runs the suite both ways.
import { setBackend } from '../src/backend';

process.env.VIDEO_LLAVA_NATIVE ??= '0';

beforeAll(async () => {
  await setBackend();
});
