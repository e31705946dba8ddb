// Run the book's web module (nbs/web/llmbook-web.js) in Node with
// onnxruntime-node, for tests/test_web.py:
//   node web/check.mjs BUNDLE_DIR REQUEST.json  ->  JSON on stdout
// REQUEST: {prompts: [text], greedy: {prompt, n}, passage: text}
// Answer: the prefill logits of each prompt, n greedy ids generated one
// cached step at a time, and the passage's token ids.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { loadModel, step, generate, promptIds }
  from '../nbs/web/llmbook-web.js';

const [dir, reqPath] = process.argv.slice(2);
const req = JSON.parse(await readFile(reqPath, 'utf8'));
const m = await loadModel(ort, async (n) => (await readFile(join(dir, n))).buffer);
const logits = [];
for (const p of req.prompts) {
  const ids = m.tok.encode(p);
  logits.push({ ids, logits: Array.from((await step(m, ids, null)).logits) });
}
const greedy = [];
const g = req.greedy;
for await (const id of generate(m, promptIds(m.tok, g.prompt),
                                { maxNewTokens: g.n, temperature: 0 }))
  greedy.push(id);
const passage = m.tok.encode(req.passage);
console.log(JSON.stringify({ logits, greedy, passage,
  decoded: m.tok.decode(passage) }));
