/**
 * Headless Chromium for the browser tests and benchmarks: the Debian `chromium` package (never a downloaded
 * browser), driven by puppeteer-core, on a fresh profile, with nothing reaching the network.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import puppeteer, { Browser } from 'puppeteer-core';

/** CHROMIUM_PATH, else the Debian package's binary; null when neither exists. */
export function findChromium(): string | null {
  const candidates = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'];
  return candidates.find((c): c is string => !!c && fs.existsSync(c)) ?? null;
}

export const NO_CHROMIUM = 'browser tests skipped: no Chromium (Debian: apt-get install chromium; or set CHROMIUM_PATH)';

export interface LaunchedBrowser {
  browser: Browser;
  close(): Promise<void>;
}

/** `protocolTimeoutMs`: how long one call into the page may take (benchmarks: minutes on WebGL / SwiftShader). */
export async function launchChromium(executablePath: string, protocolTimeoutMs = 180_000): Promise<LaunchedBrowser> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'video-llava-chromium-'));
  const browser = await puppeteer.launch({
    executablePath,
    headless: true,
    userDataDir: profile,
    protocolTimeout: protocolTimeoutMs,
    args: [
      // root in a container has no user namespaces for the sandbox
      ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
      // this machine has no internet: no update checks, sync or QUIC probes
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-sync',
      '--disable-quic',
      // Linux Chromium hides its WebGPU adapter (SwiftShader here) without this
      '--enable-unsafe-webgpu',
    ],
  });
  return {
    browser,
    close: async () => {
      await browser.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}
