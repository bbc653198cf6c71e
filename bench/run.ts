/**
 * `npm run bench`: every benchmark in one run, so the figures are ratios taken under the same load.
 *
 *   npm run bench                 kernels (stock vs native), GPTQ per module, pipeline memory/throughput
 *   npm run bench -- --oneshot    also the whole hidden-2048 GPTQ oneshot, stock vs accelerated (slow:
 *                                 about 20 minutes on stock wasm)
 *
 * Each part is also runnable alone: `npx tsx bench/kernels.ts`, `bench/gptq.ts`, `bench/pipeline.ts`.
 */
import { loadavg } from 'node:os';
import { main as kernels, oneshotComparison } from './kernels.js';
import { main as gptq } from './gptq.js';
import { main as pipeline } from './pipeline.js';

const args = process.argv.slice(2);
console.log(`# layerstream benchmarks (load average ${loadavg()[0].toFixed(2)} at start)\n`);
console.log('## Kernels: stock wasm vs the native accelerator\n');
await kernels();
console.log('\n## GPTQ per module\n');
await gptq();
console.log('\n## Layer-sequential pipeline: throughput and memory\n');
await pipeline([]);
if (args.includes('--oneshot')) {
  console.log('\n## Whole oneshot, GPTQ W4A16, hidden 2048, 4 layers, 32 x 512 tokens\n');
  await oneshotComparison();
}
console.log(`\nload average at the end: ${loadavg()[0].toFixed(2)}`);
