#!/usr/bin/env node
/**
 * Screenshots of the demo page at desktop and phone widths, after its first answer (headless Debian Chromium, see
 * test/browser/chromium.ts for the flags): examples/web/screenshot-desktop.png and screenshot-phone.png.
 * Needs `npm run build` first.   node scripts/screenshot-web.js
 */
const fs = require('fs');
const os = require('os');
const path = require('path');
const puppeteer = require('puppeteer-core');
const { startWebServer } = require('../dist/cli/web_server.js');
const { webMounts } = require('../dist/cli/web.js');

const ROOT = path.join(__dirname, '..');
const SIZES = { desktop: { width: 1280, height: 660 }, phone: { width: 390, height: 844, isMobile: true, hasTouch: true } };

async function main() {
  const server = await startWebServer({ mounts: webMounts() });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'video-llava-shot-'));
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    userDataDir: profile,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic'],
  });
  try {
    for (const [name, viewport] of Object.entries(SIZES)) {
      const page = await browser.newPage();
      await page.setViewport(viewport);
      await page.goto(server.url);
      await page.waitForFunction('window.videoLlava !== undefined');
      await page.evaluate(() => window.videoLlava.firstAnswer);
      await page.evaluate(() => document.querySelector('video').pause());
      const file = path.join(ROOT, 'examples', 'web', `screenshot-${name}.png`);
      await page.screenshot({ path: file, fullPage: name === 'phone' });
      console.log(`${path.relative(ROOT, file)} (${viewport.width} px wide)`);
      await page.close();
    }
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
    await server.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
