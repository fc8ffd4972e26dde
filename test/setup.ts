// Every test file runs on the backend named by VIDEO_LLAVA_BACKEND (default: wasm).
import { setBackend } from '../src/backend';

beforeAll(async () => {
  await setBackend();
});
