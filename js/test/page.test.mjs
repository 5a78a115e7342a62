// The example key browser (example/) in headless Chromium, against a running tikv-mock:
// connect, put, get, scan and delete through the page's controls, with a screenshot check.
// Needs the web build in pkg-web/, TIKV_MOCK_PD, and Chromium (CHROMIUM, else /usr/bin/chromium).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { chromium } from 'playwright-core';
import { PNG } from 'pngjs';
import { serve } from '../example/serve.mjs';

const pd = process.env.TIKV_MOCK_PD;
assert.ok(pd, 'set TIKV_MOCK_PD');
let server;
let browser;

before(async () => {
  server = await serve(0);
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium' });
});

after(async () => {
  await browser?.close();
  server?.close();
});

/** Pixels of `png` that differ from its most common colour (the background). */
function inked(png) {
  const counts = new Map();
  for (let i = 0; i < png.data.length; i += 4) {
    const rgb = (png.data[i] << 16) | (png.data[i + 1] << 8) | png.data[i + 2];
    counts.set(rgb, (counts.get(rgb) ?? 0) + 1);
  }
  const background = Math.max(...counts.values());
  return png.width * png.height - background;
}

test('the key browser puts, gets, scans and deletes keys', async () => {
  const page = await browser.newPage({ viewport: { width: 900, height: 600 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  const { port } = server.address();
  await page.goto(`http://127.0.0.1:${port}/example/?pd=${pd}`);
  const status = page.locator('#status');
  await assert.doesNotReject(status.filter({ hasText: 'Connected to' }).waitFor({ timeout: 20000 }));

  const table = page.locator('#pairs');
  const empty = PNG.sync.read(await table.screenshot());

  for (const [key, value] of [['page/apple', 'red'], ['page/banana', 'yellow'], ['page/cherry', 'dark red']]) {
    await page.fill('#key', key);
    await page.fill('#value', value);
    await page.click('#put');
    await status.filter({ hasText: `Put "${key}"` }).waitFor();
  }
  await page.fill('#key', 'page/banana');
  await page.fill('#value', '');
  await page.click('#get');
  await status.filter({ hasText: '"page/banana" = "yellow"' }).waitFor();
  assert.equal(await page.inputValue('#value'), 'yellow');

  await page.fill('#prefix', 'page/');
  await page.click('#scan button');
  await status.filter({ hasText: '3 keys with prefix "page/"' }).waitFor();
  const rows = await page.locator('#pairs tbody tr').allInnerTexts();
  assert.deepEqual(rows.map((r) => r.split('\t')), [
    ['page/apple', 'red'],
    ['page/banana', 'yellow'],
    ['page/cherry', 'dark red'],
  ]);

  // The screenshot check: the rendered table grew three rows of text.
  const shot = await page.screenshot({ fullPage: true });
  await mkdir(new URL('../test-output/', import.meta.url), { recursive: true });
  await writeFile(new URL('../test-output/key-browser.png', import.meta.url), shot);
  const filled = PNG.sync.read(await table.screenshot());
  assert.ok(filled.height > empty.height + 40, `table ${empty.height}px -> ${filled.height}px`);
  assert.ok(inked(filled) > inked(empty) + 500, 'rows rendered as visible text');
  const full = PNG.sync.read(shot);
  assert.equal(full.width, 900);

  await page.fill('#key', 'page/banana');
  await page.click('#delete');
  await status.filter({ hasText: 'Deleted "page/banana"' }).waitFor();
  await page.click('#scan button');
  await status.filter({ hasText: '2 keys' }).waitFor();

  // A failure is shown with the client's error code.
  await page.fill('#limit', '20000');
  await page.click('#scan button');
  await page.locator('#status.error').filter({ hasText: 'InvalidArgument' }).waitFor();
  assert.deepEqual(errors, []);
});
