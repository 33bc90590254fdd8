// The typed client must match docs/api/openapi.yaml: the generated types are current, and every
// path the client calls is in the spec.
import {describe, expect, it} from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import {RESOURCES} from '../src/api/client';
// @ts-expect-error: a plain .mjs script without type declarations
import {generated, normalise} from '../scripts/check-api.mjs';

const schema = fs.readFileSync(path.join(__dirname, '..', 'src', 'api', 'schema.d.ts'), 'utf8');

describe('API client against the OpenAPI spec', () => {
  it('src/api/schema.d.ts is generated from the current spec (else: npm run gen:api)', async () => {
    expect(normalise(schema)).toBe(normalise(await generated()));
  }, 30000);

  it('every path the client uses is in the spec', () => {
    const used = [...Object.values(RESOURCES), '/api/v1/auth/login', '/api/v1/auth/logout', '/api/v1/users/me',
      '/api/v1/creatives/upload', '/api/v1/placements/{id}/tag', '/metrics', '/healthz'];
    for (const p of used) expect(schema, p).toContain(`"${p}": {`);
  });
});
