// The hand-written TypeScript declarations (types/*.d.ts) compile and fit
// the way an app uses the package (test/types/usage.ts), with tsc --strict.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

test('types: tsc --strict accepts the declarations as apps use them', () => {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  try {
    execFileSync(process.execPath, [tsc, '-p', join(here, '../types/tsconfig.json')], { stdio: 'pipe' });
  } catch (err) {
    assert.fail('tsc: ' + (err.stdout || '') + (err.stderr || ''));
  }
});
