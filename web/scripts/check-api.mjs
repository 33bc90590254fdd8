// Fails when src/api/schema.d.ts (the API types the client is checked against) no longer matches
// docs/api/openapi.yaml: regenerates them into memory and compares. Fix: `npm run gen:api`.
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import openapiTS, {astToString} from 'openapi-typescript';

const here = path.dirname(fileURLToPath(import.meta.url));
const spec = path.join(here, '..', '..', 'docs', 'api', 'openapi.yaml');
const out = path.join(here, '..', 'src', 'api', 'schema.d.ts');

export async function generated() {
  const ast = await openapiTS(new URL('file://' + spec));
  return astToString(ast);
}

export function normalise(s) {
  // the CLI adds a header comment; compare the declarations only
  return s.replace(/^\/\*\*[\s\S]*?\*\/\s*/, '').replace(/\s+/g, ' ').trim();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const want = normalise(await generated());
  const have = fs.existsSync(out) ? normalise(fs.readFileSync(out, 'utf8')) : '';
  if (want !== have) {
    console.error('src/api/schema.d.ts is out of date with docs/api/openapi.yaml: run `npm run gen:api`');
    process.exit(1);
  }
  console.log('API types match docs/api/openapi.yaml');
}
