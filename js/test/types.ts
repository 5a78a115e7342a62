// Compiled by `tsc --noEmit` against the generated declarations: the API as TypeScript users
// see it. Nothing here runs.
import { RawClient, TransactionClient, Transaction, ConnectOptions, BeginOptions } from '../pkg-node/tikv_client_wasm';

export async function usage(pd: string[]): Promise<number> {
  const options: ConnectOptions = { urlTemplate: 'https://proxy.example.com/tikv/{host}/{port}', timeoutMs: 2000 };
  const raw: RawClient = await RawClient.connect(pd, options);
  await raw.put('k', new Uint8Array([1]), 60);
  const value: Uint8Array | undefined = await raw.get('k');
  const values: Array<Uint8Array | undefined> = await raw.batchGet(['a', 'b']);
  await raw.batchPut([['a', '1'], ['b', '2']]);
  const pairs: Array<{ key: Uint8Array; value: Uint8Array }> = await raw.scan('a', 'z', 10);
  const swap: { swapped: boolean; previous?: Uint8Array } = await raw.compareAndSwap('c', undefined, 'v');
  const client: TransactionClient = await TransactionClient.connect(pd);
  const begin: BeginOptions = { pessimistic: true, asyncCommit: false };
  const txn: Transaction = await client.begin(begin);
  const plain: Transaction = await client.begin();
  await plain.rollback();
  await txn.put('k', 'v');
  const commitTs: string | undefined = await txn.commit();
  return (value?.length ?? 0) + values.length + pairs.length + (swap.swapped ? 1 : 0) + (commitTs ? 1 : 0);
}
