#!/usr/bin/env node
/*
 * Builds the optional native addon (native/) with node-gyp, the toolchain npm itself carries. Runs at
 * `npm install`; never fails the install: without a C compiler or Node's headers it prints one line and the
 * package runs without the addon. VIDEO_LLAVA_ADDON=0 skips it.
 */
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const nativeDir = path.join(root, 'native');

function nodeGyp() {
  if (process.env.npm_config_node_gyp && fs.existsSync(process.env.npm_config_node_gyp)) return process.env.npm_config_node_gyp;
  const npmDir = path.dirname(path.dirname(fs.realpathSync(process.execPath)));
  for (const candidate of [
    path.join(npmDir, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    path.join(npmDir, 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ]) {
    if (fs.existsSync(candidate)) return candidate;
  }
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    return null;
  }
}

/** Node's headers shipped with the runtime (Debian's nodejs, official tarballs) save node-gyp a download. */
function nodeDir() {
  const prefix = path.dirname(path.dirname(fs.realpathSync(process.execPath)));
  return fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : null;
}

function main() {
  if (['0', 'false', 'off', 'no'].includes(String(process.env.VIDEO_LLAVA_ADDON ?? '').toLowerCase())) {
    console.log('video-llava: native addon not built (VIDEO_LLAVA_ADDON=0)');
    return;
  }
  const gyp = nodeGyp();
  if (!gyp) {
    console.log('video-llava: native addon not built (node-gyp not found); 16-bit weights will use the slower JS path');
    return;
  }
  const args = [gyp, 'rebuild', '--directory', nativeDir];
  const dir = nodeDir();
  if (dir) args.push(`--nodedir=${dir}`);
  const result = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
  if (result.status !== 0) {
    const lines = `${result.stdout ?? ''}\n${result.stderr ?? ''}`.split('\n').filter((l) => /error/i.test(l));
    console.log(`video-llava: native addon not built (${lines[0]?.trim() || `node-gyp exited with ${result.status}`}); 16-bit weights will use the slower JS path`);
    return;
  }
  console.log('video-llava: native addon built (native/build/Release/video_llava_native.node)');
}

main();
