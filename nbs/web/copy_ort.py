"""Quarto pre-render step: copy onnxruntime-web's WebAssembly build beside the book.

The widget of the in-browser appendix loads onnxruntime-web from `web/ort/` when it
is there, else from a CDN. `npm ci` in the repository's `web/` folder installs the
pinned version; this copies the three files the page needs into the project Quarto
renders (nbdev's `_proc/`), so the book works offline. Without them, it says so.
"""
import shutil, sys
from pathlib import Path

FILES = ('ort.wasm.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm')
src = Path('..')/'web'/'node_modules'/'onnxruntime-web'/'dist'
dst = Path('web')/'ort'
if all((src/f).exists() for f in FILES):
    dst.mkdir(parents=True, exist_ok=True)
    for f in FILES: shutil.copyfile(src/f, dst/f)
else:
    print(f"copy_ort: {src} lacks onnxruntime-web (run `npm ci` in web/); "
          "the in-browser model will load it from the CDN", file=sys.stderr)
