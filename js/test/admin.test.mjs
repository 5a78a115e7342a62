// The mock's admin API (docs/mock-admin.md) from Node, next to the JavaScript client: a fault
// injected over HTTP on the PD port, which the client rides out by retrying, and the rule's
// trace in the call log. Run by scripts/test-all.sh with WASM_PKG and TIKV_MOCK_PD set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const pkg = process.env.WASM_PKG;
const pd = process.env.TIKV_MOCK_PD;
assert.ok(pkg && pd, 'set WASM_PKG and TIKV_MOCK_PD');
const { RawClient } = require(pkg);

/** One admin API call; fails the test unless it answers 2xx. */
async function admin(method, path, body) {
  const res = await fetch(`http://${pd}/mock/api/v1/${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await res.json();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

test('a ServerIsBusy injected over the admin API is retried by the client', async () => {
  const raw = await RawClient.connect([pd]);
  await raw.put('admin-js/k', 'v');
  // Other test files share this mock: the rule is narrowed to this file's keys.
  const { id } = await admin('POST', 'rules', {
    method: 'RawGet',
    key_prefix: 'admin-js/',
    nth: 1,
    region_error: 'ServerIsBusy',
  });
  try {
    assert.equal(new TextDecoder().decode(await raw.get('admin-js/k')), 'v');
    const rule = (await admin('GET', 'rules')).find((r) => r.id === id);
    assert.equal(rule.fired, 1, JSON.stringify(rule));
    const busy = (await admin('GET', 'calls?method=RawGet')).filter((c) => c.region_error === 'ServerIsBusy');
    assert.equal(busy.length, 1, JSON.stringify(busy));
    assert.equal(busy[0].outcome, 'RegionError');
  } finally {
    await admin('DELETE', `rules/${id}`);
  }
  assert.ok(!(await admin('GET', 'rules')).some((r) => r.id === id), 'removed');
});
