// Sequential raw get latency of the wasm build in Node and in headless Chromium, against the
// cluster at TIKV_MOCK_PD. Prints one JSON line per runtime. Run by scripts/bench-latency.sh.
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { serve } from '../example/serve.mjs';
import { measure } from './measure.mjs';

const pd = process.env.TIKV_MOCK_PD;
const gets = Number(process.env.GETS ?? 2000);
if (!pd) throw new Error('set TIKV_MOCK_PD');

const require = createRequire(import.meta.url);
const { RawClient } = require('../pkg-node/tikv_client_wasm.js');
console.log(JSON.stringify(await measure(await RawClient.connect([pd]), gets, 'node')));

const server = await serve(0);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium' });
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/bench/page.html`);
  await page.waitForFunction(() => window.ready === true);
  console.log(JSON.stringify(await page.evaluate(([pd, gets]) => window.bench(pd, gets), [pd, gets])));
} finally {
  await browser.close();
  server.close();
}
