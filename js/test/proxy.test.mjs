// One gRPC-web proxy in front of PD and every store, as docs/envoy.md sets Envoy up: the
// client's URL template puts each server's host and port in the path, and the proxy routes
// on that prefix and strips it (Envoy: a prefix route per server with `prefix_rewrite: "/"`).
// This stand-in is plain Node http; it proves the client side of that contract.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const pkg = process.env.WASM_PKG;
const pd = process.env.TIKV_MOCK_PD;
assert.ok(pkg && pd, 'set WASM_PKG and TIKV_MOCK_PD');
const { RawClient, TransactionClient } = require(pkg);

/** Starts the proxy; `routed` counts requests per upstream `host:port`. */
function proxy(routed) {
  const server = createServer((req, res) => {
    const match = /^\/tikv\/([^/]+)\/(\d+)(\/.*)$/.exec(req.url);
    if (!match) {
      res.writeHead(404).end();
      return;
    }
    const [, host, port, path] = match;
    routed.set(`${host}:${port}`, (routed.get(`${host}:${port}`) ?? 0) + 1);
    const upstream = request({ host, port, path, method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => res.writeHead(502).end());
    req.pipe(upstream);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

test('every request goes through one path-routing proxy', async () => {
  const routed = new Map();
  const server = await proxy(routed);
  try {
    const urlTemplate = `http://127.0.0.1:${server.address().port}/tikv/{host}/{port}`;
    const raw = await RawClient.connect([pd], { urlTemplate });
    await raw.put('proxy/k', 'v');
    assert.equal(new TextDecoder().decode(await raw.get('proxy/k')), 'v');
    const txns = await TransactionClient.connect([pd], { urlTemplate });
    const txn = await txns.begin();
    await txn.put('proxy/t', '1');
    assert.ok(await txn.commit());
    assert.ok(routed.get(pd) > 0, 'PD was reached through the proxy');
    const stores = [...routed.keys()].filter((k) => k !== pd);
    assert.ok(stores.length >= 1, `stores reached through the proxy: ${[...routed.keys()]}`);
  } finally {
    server.close();
  }
});
