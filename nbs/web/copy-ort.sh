#!/bin/sh
# Quarto pre-render step (in nbdev's _proc/): copy onnxruntime-web's WebAssembly
# build beside the book, so the in-browser model of appendix C needs no CDN.
# `npm ci` in the repository's web/ installs the pinned version; without it the
# page loads onnxruntime-web from the CDN, and this says so.
src=../web/node_modules/onnxruntime-web/dist
files="ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm"
for f in $files; do
  if [ ! -f "$src/$f" ]; then
    echo "copy-ort: $src lacks $f (run npm ci in web/); the page will use the CDN" >&2
    exit 0
  fi
done
mkdir -p web/ort
for f in $files; do cp "$src/$f" web/ort/; done
