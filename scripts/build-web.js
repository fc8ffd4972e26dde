#!/usr/bin/env node
/**
 * The browser build (esbuild), into dist/web/:
 *   video-llava.js      the library as one ES module (src/web/index.ts), with its source map
 *   tfjs-backend-wasm*.wasm   the wasm backend's binaries, which the library loads from its own folder
 *   index.html, app.js, style.css   the demo page (examples/web), which imports ./video-llava.js
 *
 * The one platform seam: src/platform/index.ts exports './node'; here './browser' is bundled in its place, so no
 * Node-only module (fs, ffmpeg, sharp, the native addon, the Hub cache on disk) can enter the bundle: esbuild
 * refuses Node built-ins on platform 'browser', and the bundle's inputs are checked below as well.
 *
 *   node scripts/build-web.js [--no-minify]
 */
const esbuild = require('esbuild');
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const out = path.join(root, 'dist', 'web');
const platformIndex = path.join(root, 'src', 'platform', 'index.ts');
const libraryEntry = path.join(root, 'src', 'web', 'index.ts');
const minify = !process.argv.includes('--no-minify');

/** src/platform/index.ts's './node' → './browser'. */
const browserPlatform = {
  name: 'browser-platform',
  setup(build) {
    build.onResolve({ filter: /^\.\/node$/ }, (args) =>
      args.importer === platformIndex ? { path: path.join(root, 'src', 'platform', 'browser.ts') } : undefined,
    );
  },
};

/** The demo imports the library's source for its types; in the page it imports the built ./video-llava.js. */
const libraryAsModule = {
  name: 'library-as-module',
  setup(build) {
    build.onResolve({ filter: /src\/web$/ }, () => ({ path: './video-llava.js', external: true }));
  },
};

/** Modules that must never be part of the browser bundle. */
const NODE_ONLY = [
  /^src\/platform\/node\.ts$/,
  /^src\/native\/(addon|blas|index)\.ts$/,
  /^src\/hub\/(resolve|cache|download|lock|settings|http)\.ts$/,
  /^src\/processing\/(ffmpeg|video|image_decode)\.ts$/,
  /^src\/training\/save\.ts$/,
  /^src\/cli\//,
  /node_modules\/(sharp|nblas|@ffmpeg-installer)\//,
];

async function main() {
  fs.rmSync(out, { recursive: true, force: true });
  const common = { bundle: true, format: 'esm', platform: 'browser', target: 'es2022', minify, sourcemap: true, logLevel: 'warning' };
  const lib = await esbuild.build({
    ...common,
    entryPoints: { 'video-llava': libraryEntry },
    outdir: out,
    plugins: [browserPlatform],
    metafile: true,
  });
  const inputs = Object.keys(lib.metafile.inputs);
  const leaked = inputs.filter((file) => NODE_ONLY.some((re) => re.test(file)));
  if (leaked.length > 0) throw new Error(`Node-only modules in the browser bundle: ${leaked.join(', ')}`);
  await esbuild.build({
    ...common,
    entryPoints: { app: path.join(root, 'examples', 'web', 'app.ts') },
    outdir: out,
    plugins: [libraryAsModule],
  });
  const wasmDir = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
  for (const file of fs.readdirSync(wasmDir).filter((f) => f.endsWith('.wasm'))) fs.copyFileSync(path.join(wasmDir, file), path.join(out, file));
  for (const file of ['index.html', 'style.css']) fs.copyFileSync(path.join(root, 'examples', 'web', file), path.join(out, file));
  const size = fs.statSync(path.join(out, 'video-llava.js')).size;
  console.log(`dist/web: video-llava.js ${(size / 1024 ** 2).toFixed(2)} MiB (${inputs.length} modules, none Node-only), wasm binaries, demo page`);
}

module.exports = { browserPlatform };

if (require.main === module) {
  main().catch((err) => {
    console.error(err.message ?? err);
    process.exit(1);
  });
}
