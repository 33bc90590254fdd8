// After `vite build`: prints the gzip size of the initial JS (the entry chunk and what index.html
// preloads) and of every chunk, fails when the initial JS is over the budget (150 KB gzipped),
// and writes a .gz sibling of each text asset, which the control plane sends to clients that
// accept gzip (src/api/ap_web.c).
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import {fileURLToPath} from 'node:url';

const BUDGET = 150 * 1024;
const dist = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');
const html = fs.readFileSync(path.join(dist, 'index.html'), 'utf8');
const initial = [...html.matchAll(/<(?:script[^>]*\ssrc|link[^>]*rel="modulepreload"[^>]*\shref)="\/([^"]+\.js)"/g)].map((m) => m[1]);
const gz = (f) => zlib.gzipSync(fs.readFileSync(path.join(dist, f)), {level: 9});

let total = 0;
console.log('initial JS (gzip):');
for (const f of initial) {
  const n = gz(f).length;
  total += n;
  console.log(`  ${f.padEnd(44)} ${(n / 1024).toFixed(1).padStart(7)} KB`);
}
console.log(`  ${'total'.padEnd(44)} ${(total / 1024).toFixed(1).padStart(7)} KB (budget ${BUDGET / 1024} KB)`);

const files = fs.readdirSync(path.join(dist, 'static')).map((f) => 'static/' + f);
for (const f of ['index.html', 'favicon.svg', ...files]) {
  if (!/\.(js|css|svg|html)$/.test(f) || !fs.existsSync(path.join(dist, f))) continue;
  const raw = fs.statSync(path.join(dist, f)).size;
  if (raw < 1024 || f === 'index.html') continue;
  const z = gz(f);
  fs.writeFileSync(path.join(dist, f + '.gz'), z);
  const mtime = fs.statSync(path.join(dist, f)).mtime;
  fs.utimesSync(path.join(dist, f + '.gz'), mtime, mtime);
}
if (!initial.length) {
  console.error('no entry script found in dist/index.html');
  process.exit(1);
}
if (total > BUDGET) {
  console.error(`initial JS is ${(total / 1024).toFixed(1)} KB gzipped, over the ${BUDGET / 1024} KB budget`);
  process.exit(1);
}
