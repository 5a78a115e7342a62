// The JavaScript API in Node 20 over gRPC-web, against a running tikv-mock.
// Run by scripts/test-all.sh with WASM_PKG (the wasm-bindgen `nodejs` output) and
// TIKV_MOCK_PD (the mock's PD address) set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const pkg = process.env.WASM_PKG;
const pd = process.env.TIKV_MOCK_PD;
assert.ok(pkg && pd, 'set WASM_PKG and TIKV_MOCK_PD');
const { RawClient, TransactionClient, version } = require(pkg);

const text = (bytes) => new TextDecoder().decode(bytes);

test('version is the crate version', () => {
  assert.match(version(), /^\d+\.\d+\.\d+/);
});

test('raw round trips with strings and Uint8Arrays', async () => {
  const raw = await RawClient.connect([pd]);
  await raw.put('node/k1', 'v1');
  await raw.put(new TextEncoder().encode('node/k2'), new Uint8Array([1, 2, 3]));
  assert.equal(text(await raw.get('node/k1')), 'v1');
  assert.deepEqual([...(await raw.get('node/k2'))], [1, 2, 3]);
  assert.equal(await raw.get('node/absent'), undefined);
  const pairs = await raw.scan('node/', 'node0', 10);
  assert.deepEqual(pairs.map((p) => text(p.key)), ['node/k1', 'node/k2']);
  await raw.deleteRange('node/', 'node0');
  assert.equal(await raw.get('node/k1'), undefined);
});

test('bad input and failures are Errors with a code', async () => {
  const raw = await RawClient.connect([pd]);
  await assert.rejects(raw.get(42), (e) => e instanceof Error && e.code === 'InvalidArgument');
  await assert.rejects(raw.scan('z', 'a', 10), (e) => e.code === 'InvalidArgument');
  await assert.rejects(RawClient.connect(['127.0.0.1:1']), (e) => e.code === 'Unavailable');
  // JavaScript timers cannot wait 2^31 ms or more: refused, not a panic in the wasm module.
  await assert.rejects(
    RawClient.connect([pd], { timeoutMs: 2 ** 31 }),
    (e) => e.code === 'InvalidArgument' && /2147483647/.test(e.message),
  );
  const patient = await RawClient.connect([pd], { timeoutMs: 2 ** 31 - 1 });
  assert.equal(await patient.get('node/absent'), undefined);
});

test('transactions and a write conflict surfaced as its code', async () => {
  const client = await TransactionClient.connect([pd]);
  const setup = await client.begin();
  await setup.put('node-txn/a', '1');
  assert.ok(await setup.commit());
  const t1 = await client.begin({ asyncCommit: true });
  const t2 = await client.begin({ pessimistic: false });
  assert.equal(text(await t2.get('node-txn/a')), '1');
  await t1.put('node-txn/a', 'x');
  await t2.put('node-txn/a', 'y');
  await t1.commit();
  await assert.rejects(t2.commit(), (e) => e.code === 'WriteConflict');
  const reader = await client.begin({ pessimistic: true });
  const pairs = await reader.scan('node-txn/', 'node-txn0', 10);
  assert.equal(text(pairs[0].value), 'x');
  await reader.rollback();
});

test('batches, compare-and-swap and TTL', async () => {
  const raw = await RawClient.connect([pd]);
  await raw.batchPut([['node-b/1', 'a'], ['node-b/2', 'b']]);
  const values = await raw.batchGet(['node-b/2', 'node-b/none', 'node-b/1']);
  assert.deepEqual(values.map((v) => (v === undefined ? undefined : text(v))), ['b', undefined, 'a']);
  let r = await raw.compareAndSwap('node-b/cas', undefined, '1');
  assert.equal(r.swapped, true);
  r = await raw.compareAndSwap('node-b/cas', '2', '3');
  assert.equal(r.swapped, false);
  assert.equal(text(r.previous), '1');
  // The test cluster runs API v1: TTLs are not stored there.
  await assert.rejects(raw.ttl('node-b/1'), (e) => e.code === 'Unsupported');
  await raw.batchDelete(['node-b/1', 'node-b/2']);
  assert.equal(await raw.get('node-b/1'), undefined);
});

test('connect options: a URL template routes every server, bad options are rejected', async () => {
  // Every address goes through the template; here it names the real address again.
  const raw = await RawClient.connect([pd], { urlTemplate: 'http://{host}:{port}', timeoutMs: 5000 });
  await raw.put('node-opt/k', 'v');
  assert.equal(text(await raw.get('node-opt/k')), 'v');
  // A template pointing nowhere: PD cannot be reached through it.
  await assert.rejects(
    RawClient.connect([pd], { urlTemplate: 'http://127.0.0.1:1/{addr}' }),
    (e) => e.code === 'Unavailable',
  );
  await assert.rejects(RawClient.connect([pd], { timeoutMs: -1 }), (e) => e.code === 'InvalidArgument');
  await assert.rejects(RawClient.connect([pd], { urlTemplate: 7 }), (e) => e.code === 'InvalidArgument');
  const client = await TransactionClient.connect([pd], {});
  await assert.rejects(client.begin({ pessimistic: 'yes' }), (e) => e.code === 'InvalidArgument');
  const txn = await client.begin({ tryOnePc: true });
  await txn.put('node-opt/one', '1');
  assert.ok(await txn.commit());
});
