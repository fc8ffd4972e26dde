#!/usr/bin/env bash
# Optional: the native TensorFlow backend (@tensorflow/tfjs-node 4.22.0) without access to
# storage.googleapis.com, where its install script downloads libtensorflow. The same C API (2.9.1, the
# version tfjs-node 4.x pins) ships inside the PyPI wheel tensorflow-cpu==2.9.1, which pip can fetch from a
# registry mirror. Nothing in this package needs it; `--backend tensorflow` uses it when it resolves.
#
#   bash scripts/tfjs-node-offline.sh [DEST]          # DEST defaults to .tfjs-node (git-ignored)
#   export NODE_PATH="$PWD/node_modules:$PWD/.tfjs-node/node_modules"
#   npx video-llava generate --backend tensorflow ...
#
# Kept outside node_modules so that `npm ci` neither needs nor removes it. Needs python3 with pip, gcc, make,
# readelf (binutils) and the Node headers (/usr/include/node, as a distribution's nodejs package installs
# them). Downloads ~210 MB (the wheel) and leaves ~490 MB in DEST.
#
# How it works: the wheel has the TF C API inside tensorflow/python/_pywrap_tensorflow_internal.so, which
# also references ~190 CPython symbols; a stub library defines them (never called from Node: a call aborts
# with "pystub: NAME called"), and a linker script named libtensorflow.so links both, so tfjs-node's own
# binding.gyp builds unchanged.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$(mkdir -p "${1:-$REPO/.tfjs-node}" && cd "${1:-$REPO/.tfjs-node}" && pwd)"
WHEELS="$DEST/wheel"
TF_VERSION=2.9.1

cd "$DEST"
[ -f package.json ] || printf '{ "name": "tfjs-node-offline", "private": true }\n' > package.json
npm install --no-audit --no-fund --ignore-scripts @tensorflow/tfjs-node@4.22.0
ADDON="$DEST/node_modules/@tensorflow/tfjs-node"

# 1. libtensorflow (C API), the framework library and the C headers out of the wheel
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.10 \
  --platform manylinux2014_x86_64 "tensorflow-cpu==$TF_VERSION" -d "$WHEELS"
python3 - "$(ls "$WHEELS"/tensorflow_cpu-$TF_VERSION-*.whl)" "$ADDON/deps" <<'PY'
import os, shutil, sys, zipfile
wheel, deps = sys.argv[1], sys.argv[2]
wanted = {
    'tensorflow/python/_pywrap_tensorflow_internal.so': 'lib/_pywrap_tensorflow_internal.so',
    'tensorflow/libtensorflow_framework.so.2': 'lib/libtensorflow_framework.so.2',
}
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        header = name.endswith('.h') and (name.startswith('tensorflow/include/tensorflow/c/')
                                          or name.startswith('tensorflow/include/tensorflow/core/platform/ctstring'))
        target = 'include/' + name[len('tensorflow/include/'):] if header else wanted.get(name)
        if target is None:
            continue
        path = os.path.join(deps, target)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with z.open(name) as src, open(path, 'wb') as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(path, 0o755)
PY
rm -rf "$WHEELS"

# 2. the CPython stub: data symbols as zeroed storage, functions that abort if ever called
cd "$ADDON/deps/lib"
readelf -rW _pywrap_tensorflow_internal.so | awk '$5 ~ /^_?Py/ { print $3, $5 }' | sort -u | python3 -c '
import sys
print("#include <stdio.h>\n#include <stdlib.h>")
print("static void called(const char *name) { fprintf(stderr, \"pystub: %s called\\n\", name); abort(); }")
for line in sys.stdin:
    kind, name = line.split()
    if kind == "R_X86_64_GLOB_DAT" and name != "PyType_GenericNew":
        print(f"__attribute__((aligned(64))) char {name}[1024];")
    else:
        print(f"void {name}(void) {{ called(\"{name}\"); }}")
' > pystub.c
gcc -shared -fPIC -O1 -o libpystub.so pystub.c -Wl,-soname,libpystub.so
rm pystub.c

# 3. the names binding.gyp links (-ltensorflow -ltensorflow_framework) and install.js looks for
printf 'INPUT(libpystub.so _pywrap_tensorflow_internal.so)\n' > libtensorflow.so
ln -sf libtensorflow.so "libtensorflow.so.$TF_VERSION"
ln -sf libtensorflow_framework.so.2 libtensorflow_framework.so
ln -sf libtensorflow_framework.so.2 "libtensorflow_framework.so.$TF_VERSION"

# 4. build the addon: install.js finds libtensorflow and skips its download; the prebuilt-addon download
#    fails offline and node-pre-gyp falls back to node-gyp (--no-as-needed keeps the stub linked)
cd "$DEST"
NODEDIR="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
rm -rf "$ADDON/lib" "$ADDON"/build-tmp-*
LDFLAGS=-Wl,--no-as-needed npm rebuild @tensorflow/tfjs-node --foreground-scripts --nodedir="$NODEDIR"

# 5. use the package's own @tensorflow/tfjs (one copy of the engine and its kernels): drop the duplicates
for d in "$DEST"/node_modules/@tensorflow/*; do
  [ "$(basename "$d")" = tfjs-node ] || rm -rf "$d"
done
cd "$REPO"
NODE_PATH="$REPO/node_modules:$DEST/node_modules" TF_CPP_MIN_LOG_LEVEL=2 node -e "
  const tf = require('@tensorflow/tfjs');
  require('@tensorflow/tfjs-node');
  tf.setBackend('tensorflow').then(() => {
    if (tf.getBackend() !== 'tensorflow') throw new Error('backend ' + tf.getBackend());
    console.log('tfjs-node OK: tf.matMul on the tensorflow backend =', tf.matMul(tf.ones([2, 2]), tf.ones([2, 2])).arraySync());
  });"
echo "export NODE_PATH=\"$REPO/node_modules:$DEST/node_modules\"   # then --backend tensorflow"
