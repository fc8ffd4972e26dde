// Lets a child `node` process run the TypeScript sources directly (tests that need real processes: a worker
// killed mid-item, a run killed at a random point): `node -r test/helpers/ts_register.js src/cli/main.ts …`.
// Each .ts file is transpiled on load with the project's module settings; no type checking (tsc does that).
const fs = require('fs');
const ts = require('typescript');

const compilerOptions = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, resolveJsonModule: true };

require.extensions['.ts'] = (module, filename) => {
  const { outputText } = ts.transpileModule(fs.readFileSync(filename, 'utf8'), { compilerOptions, fileName: filename });
  module._compile(outputText, filename);
};
