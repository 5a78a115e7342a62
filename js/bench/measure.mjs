// The measured loop, shared by Node and the browser page: sequential raw gets of one key.
export async function measure(client, gets, runtime) {
  await client.put('bench/latency', 'v');
  for (let i = 0; i < 50; i++) await client.get('bench/latency');
  const samples = [];
  for (let i = 0; i < gets; i++) {
    const started = performance.now();
    await client.get('bench/latency');
    samples.push((performance.now() - started) * 1000);
  }
  samples.sort((a, b) => a - b);
  const at = (p) => samples[Math.min(samples.length - 1, Math.floor((samples.length * p) / 100))];
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  const round = (us) => Math.round(us * 10) / 10;
  return { runtime, gets, mean_us: round(mean), p50_us: round(at(50)), p99_us: round(at(99)) };
}
