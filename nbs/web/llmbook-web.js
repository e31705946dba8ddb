// The book's model in the browser: its BPE tokenizer, one ONNX step with a
// key/value cache, greedy / temperature / top-k sampling, and the page widget.
// An ES module with no build step; onnxruntime-web (or -node) is passed in.
// Written by hand next to nbs/C_web.ipynb; the bundle comes from
// `llmbook export-web`.

// ---- the tokenizer: llmbook.tokenizer.BPETokenizer, id for id ----
export class Tokenizer {
  constructor(spec) { // tokenizer.json of a bundle
    this.split = new RegExp(spec.pattern, 'gu');
    this.byteOrder = Uint8Array.from(spec.bytes); // byte of ids 0..255
    this.byteIds = new Int32Array(256);
    this.byteOrder.forEach((b, i) => { this.byteIds[b] = i; });
    this.merges = spec.merges; // merge r makes id 256 + r
    this.ranks = new Map(this.merges.map(([a, b], r) => [a * 65536 + b, r]));
    this.vocab = Array.from(this.byteOrder, (b) => Uint8Array.of(b));
    for (const [a, b] of this.merges) {
      const v = new Uint8Array(this.vocab[a].length + this.vocab[b].length);
      v.set(this.vocab[a]); v.set(this.vocab[b], this.vocab[a].length);
      this.vocab.push(v);
    }
    this.specials = spec.specials; // {'<|endoftext|>': id}
    this.specialBytes = new Map(Object.entries(this.specials).map(
      ([s, i]) => [i, new TextEncoder().encode(s)]));
    this.vocabSize = this.vocab.length + this.specialBytes.size;
    this.cache = new Map();
  }

  get eotId() { return this.specials['<|endoftext|>']; }

  bpe(ids) { // merge the lowest-ranked pair everywhere until none is left
    while (ids.length > 1) {
      let best = Infinity;
      for (let i = 0; i + 1 < ids.length; i++) {
        const r = this.ranks.get(ids[i] * 65536 + ids[i + 1]);
        if (r !== undefined && r < best) best = r;
      }
      if (best === Infinity) break;
      const [a, b] = this.merges[best], out = [];
      for (let i = 0; i < ids.length; i++) {
        if (ids[i] === a && i + 1 < ids.length && ids[i + 1] === b) {
          out.push(256 + best); i++;
        } else out.push(ids[i]);
      }
      ids = out;
    }
    return ids;
  }

  encode(text) { // ordinary text: special-token strings are not special
    const enc = new TextEncoder(), out = [];
    for (const [chunk] of text.matchAll(this.split)) {
      let ids = this.cache.get(chunk);
      if (ids === undefined) {
        ids = this.bpe(Array.from(enc.encode(chunk), (b) => this.byteIds[b]));
        this.cache.set(chunk, ids);
      }
      out.push(...ids);
    }
    return out;
  }

  decodeBytes(ids) {
    const parts = ids.map((i) => this.vocab[i] ?? this.specialBytes.get(i));
    if (parts.some((p) => p === undefined))
      throw new Error(`token id out of range for ${this.vocabSize} tokens`);
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let n = 0;
    for (const p of parts) { out.set(p, n); n += p.length; }
    return out;
  }

  decode(ids) { return new TextDecoder().decode(this.decodeBytes(ids)); }
}

// ---- the model: one ONNX graph, prefill and steps, cache in and out ----
export async function loadModel(ort, // onnxruntime-web or onnxruntime-node
                                read) { // async name -> ArrayBuffer
  const json = async (n) => JSON.parse(new TextDecoder().decode(await read(n)));
  const manifest = await json('manifest.json');
  const tok = new Tokenizer(await json('tokenizer.json'));
  const session = await ort.InferenceSession.create(
    new Uint8Array(await read('model.onnx')));
  return { ort, session, tok, manifest, cfg: manifest.config };
}

function emptyPast(m) {
  const c = m.cfg, dims = [c.n_layer, 2, c.n_kv_head, 0, c.head_dim];
  return new m.ort.Tensor('float32', new Float32Array(0), dims);
}

// Logits (T, V) of new tokens `ids` after `past` (null: none); and the cache.
export async function step(m, ids, past) {
  const idx = new m.ort.Tensor('int64', BigInt64Array.from(ids, BigInt),
                               [1, ids.length]);
  const r = await m.session.run({ idx, past: past ?? emptyPast(m) });
  return { logits: r.logits.data, present: r.present };
}

// ---- choosing the next token, as llmbook.generate.sample_next ----
export function mulberry32(seed) { // a small seeded generator of [0, 1)
  return () => {
    seed = (seed + 0x6D2B79F5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function sampleNext(logits, { temperature = 0, topK = 0, rand }) {
  let best = 0; // greedy: the first largest logit, as torch.argmax
  for (let i = 1; i < logits.length; i++)
    if (logits[i] > logits[best]) best = i;
  if (temperature === 0) return best;
  const z = Array.from(logits, (x) => x / temperature);
  if (topK > 0 && topK < z.length) { // keep the k largest (ties kept)
    const kth = [...z].sort((a, b) => b - a)[topK - 1];
    for (let i = 0; i < z.length; i++) if (z[i] < kth) z[i] = -Infinity;
  }
  const p = z.map((x) => Math.exp(x - z[best])); // softmax, unnormalised
  let u = rand() * p.reduce((a, b) => a + b, 0);
  for (let i = 0; i < p.length; i++) if ((u -= p[i]) < 0) return i;
  return best;
}

// Yield each new token id: one cached step per token while the window holds,
// then the last context_len tokens recomputed (as llmbook.generate does).
export async function* generate(m, prompt, // token ids
                                { maxNewTokens = 100, temperature = 0,
                                  topK = 0, seed = 0 } = {}) {
  const ctx = m.cfg.context_len, V = m.cfg.vocab_size;
  const rand = mulberry32(seed), out = [...prompt];
  let past = null, cached = true, x = out.slice(-ctx);
  for (let n = 0; n < maxNewTokens; n++) {
    const P = past ? past.dims[3] : 0;
    if (cached && P + x.length > ctx) cached = false; // the window slides
    if (!cached) { x = out.slice(-ctx); past = null; }
    const r = await step(m, x, past);
    if (cached) past = r.present;
    const last = r.logits.subarray((x.length - 1) * V, x.length * V);
    const id = sampleNext(last, { temperature, topK, rand });
    out.push(id); x = [id];
    yield id;
  }
}

// Prompt ids as `llmbook generate` makes them: a new document if empty.
export function promptIds(tok, text) {
  return text ? tok.encode(text) : [tok.eotId];
}

// ---- the widget of the book page ----
const fetcher = (base) => async (name) => {
  const r = await fetch(new URL(name, base));
  if (!r.ok) throw new Error(`${name}: HTTP ${r.status}`);
  return r.arrayBuffer();
};

export async function mount(el) { // the widget's root element
  const $ = (s) => el.querySelector(s);
  const q = new URLSearchParams(location.search); // ?ort=DIR: a local copy
  // onnxruntime-web: ?ort=DIR, else the book's own copy, else the CDN
  const dirs = [q.get('ort') ?? el.dataset.ort, el.dataset.ortCdn]
    .filter(Boolean).map((d) => new URL(d, document.baseURI));
  const base = new URL(el.dataset.bundle, document.baseURI);
  const status = $('.lw-stats');
  status.textContent = 'loading the model…';
  const t0 = performance.now();
  let m;
  try {
    let ort, err;
    for (const d of dirs) {
      try { ort = await import(new URL('ort.wasm.min.mjs', d).href); break; }
      catch (e) { err = e; }
    }
    if (!ort) throw err;
    ort.env.wasm.numThreads = 1; // threads need cross-origin isolation
    m = await loadModel(ort, fetcher(base));
  } catch (e) {
    status.textContent = `could not load the model: ${e.message}`;
    el.dataset.state = 'error'; return;
  }
  el.dataset.loadMs = (performance.now() - t0).toFixed(0);
  status.textContent = `${m.manifest.run.name}: ${m.manifest.params} ` +
    `parameters, loaded in ${el.dataset.loadMs} ms`;
  el.dataset.state = 'ready';
  $('.lw-go').disabled = false;
  $('.lw-go').addEventListener('click', () => run(el, m));
}

async function run(el, m) {
  const $ = (s) => el.querySelector(s), num = (s) => Number($(s).value);
  const opts = { maxNewTokens: num('.lw-n'), temperature: num('.lw-temp'),
                 topK: num('.lw-topk'), seed: num('.lw-seed') };
  const text = $('.lw-prompt').value, out = $('.lw-out');
  const dec = new TextDecoder(), ids = [];
  el.dataset.state = 'running'; $('.lw-go').disabled = true;
  out.textContent = text;
  const t0 = performance.now();
  let first = null, paint = t0;
  for await (const id of generate(m, promptIds(m.tok, text), opts)) {
    first ??= performance.now() - t0;
    ids.push(id);
    out.textContent += dec.decode(m.tok.decodeBytes([id]), { stream: true });
    if (performance.now() - paint > 30) { // let the page show the tokens
      await new Promise((r) => setTimeout(r, 0)); paint = performance.now();
    }
  }
  out.textContent += dec.decode();
  const s = (performance.now() - t0) / 1000;
  const rate = ids.length > 1 ? (ids.length - 1) / (s - first / 1000) : 0;
  $('.lw-stats').textContent = `${ids.length} tokens in ${s.toFixed(2)} s: ` +
    `first after ${first.toFixed(0)} ms, then ${rate.toFixed(0)} tokens/s`;
  Object.assign(el.dataset, { ids: JSON.stringify(ids), state: 'done',
    firstMs: first.toFixed(1), tokensPerS: rate.toFixed(1) });
  $('.lw-go').disabled = false;
}
