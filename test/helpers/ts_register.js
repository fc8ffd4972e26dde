// Lets a child `node` process run the TypeScript sources directly (tests that need real processes: a worker
// killed mid-item, a run killed at a random point): `node -r test/helpers/ts_register.js src/cli/main.ts …`.
// Each .ts file is transpiled on load with the project's module settings, no type checking (tsc does that);
// the output is cached under the temp dir by path, size and mtime, so that later processes start quickly.
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

const CACHE = path.join(os.tmpdir(), `video-llava-ts-cache-${process.getuid ? process.getuid() : 'user'}`);
let ts;

function transpile(filename, source) {
  ts ??= require('typescript');
  const compilerOptions = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, resolveJsonModule: true };
  return ts.transpileModule(source, { compilerOptions, fileName: filename }).outputText;
}

require.extensions['.ts'] = (module, filename) => {
  const stat = fs.statSync(filename);
  const key = crypto.createHash('sha1').update(`${filename}\0${stat.size}\0${stat.mtimeMs}`).digest('hex');
  const cached = path.join(CACHE, `${key}.js`);
  let code;
  try {
    code = fs.readFileSync(cached, 'utf8');
  } catch {
    code = transpile(filename, fs.readFileSync(filename, 'utf8'));
    fs.mkdirSync(CACHE, { recursive: true });
    const tmp = `${cached}.${process.pid}`;
    fs.writeFileSync(tmp, code);
    fs.renameSync(tmp, cached); // atomic: a concurrent process reads the whole file or none
  }
  module._compile(code, filename);
};
