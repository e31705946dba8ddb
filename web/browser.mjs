// Drive the book's widget in headless Chromium (playwright-core, the
// system's /usr/bin/chromium; nothing is downloaded), for tests/test_web.py
// and tests/bench_web.py:
//   node web/browser.mjs URL REQUEST.json  ->  JSON on stdout
// REQUEST: {prompt, n, temperature, topK, seed, runs, screenshot}
// Types the prompt, presses Generate `runs` times and reports, per run, the
// generated ids, the first-token time and the tokens/s the page measured.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [url, reqPath] = process.argv.slice(2);
const req = JSON.parse(await readFile(reqPath, 'utf8'));
const profile = await mkdtemp(join(tmpdir(), 'llmbook-chromium-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true, viewport: { width: 720, height: 900 },
  deviceScaleFactor: 2,
  args: ['--headless=new', '--no-sandbox', '--disable-gpu',
         '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--no-first-run'],
});
try {
  const page = ctx.pages()[0] ?? await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  const t0 = Date.now();
  await page.goto(url);
  const w = page.locator('#llmbook-web');
  await page.waitForSelector('#llmbook-web[data-state=ready], ' +
                             '#llmbook-web[data-state=error]', { timeout: 60000 });
  const pageLoadMs = Date.now() - t0;
  if (await w.getAttribute('data-state') === 'error')
    throw new Error(await w.locator('.lw-stats').textContent() + ' ' + errors);
  await w.locator('.lw-prompt').fill(req.prompt);
  for (const [sel, v] of [['.lw-n', req.n], ['.lw-temp', req.temperature],
                          ['.lw-topk', req.topK ?? 0], ['.lw-seed', req.seed ?? 0]])
    await w.locator(sel).fill(String(v));
  const runs = [];
  for (let i = 0; i < (req.runs ?? 1); i++) {
    await w.locator('.lw-go').click();
    await page.waitForSelector('#llmbook-web[data-state=done]', { timeout: 120000 });
    const d = await w.evaluate((el) => ({ ...el.dataset }));
    runs.push({ ids: JSON.parse(d.ids), firstMs: Number(d.firstMs),
                tokensPerS: Number(d.tokensPerS),
                text: await w.locator('.lw-out').textContent() });
    await w.evaluate((el) => { el.dataset.state = 'ready'; });
  }
  if (req.screenshot) await w.screenshot({ path: req.screenshot });
  const loadMs = Number(await w.getAttribute('data-load-ms'));
  console.log(JSON.stringify({ runs, loadMs, pageLoadMs, errors,
                               browser: ctx.browser()?.version() ?? null }));
} finally {
  await ctx.close();
  await rm(profile, { recursive: true, force: true });
}
