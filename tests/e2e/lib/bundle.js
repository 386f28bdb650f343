// The published atm0s SDK (`@atm0s-media-sdk/core`) for the browser. Its dist build
// (dist/lib.mjs) imports the CommonJS `protobufjs/minimal` by a bare specifier, so a
// page cannot import it as is: esbuild bundles that unchanged file with protobufjs into
// one ES module, build/atm0s-sdk.js (gitignored), served to pages at /build/atm0s-sdk.js.
// Rebuilt only when package-lock.json, the SDK's dist file or this script change.
//   node lib/bundle.js      builds it if needed (scripts/install-test-deps.sh runs this)
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { E2E_DIR } from './server.js';

export const BUILD_DIR = join(E2E_DIR, 'build');
export const ATM0S_BUNDLE = join(BUILD_DIR, 'atm0s-sdk.js');
export const ATM0S_VERSION = '1.0.0-alpha.7';
const SDK_DIR = join(E2E_DIR, 'node_modules', '@atm0s-media-sdk', 'core');
const SDK_ENTRY = join(SDK_DIR, 'dist', 'lib.mjs');

function inputsHash() {
  const h = createHash('sha256');
  for (const f of [join(E2E_DIR, 'package-lock.json'), SDK_ENTRY, fileURLToPath(import.meta.url)]) h.update(readFileSync(f));
  return h.digest('hex').slice(0, 16);
}

/** Builds build/atm0s-sdk.js unless it is up to date; returns its path. */
export async function ensureAtm0sBundle() {
  if (!existsSync(SDK_ENTRY)) {
    throw new Error(`${SDK_ENTRY} not found: run scripts/install-test-deps.sh (npm ci in tests/e2e)`);
  }
  const version = JSON.parse(readFileSync(join(SDK_DIR, 'package.json'), 'utf8')).version;
  if (version !== ATM0S_VERSION) {
    throw new Error(`node_modules has @atm0s-media-sdk/core ${version}, expected ${ATM0S_VERSION}: run scripts/install-test-deps.sh`);
  }
  const stamp = `/* mediamesh-e2e: @atm0s-media-sdk/core ${version} dist/lib.mjs bundled by esbuild; inputs ${inputsHash()} */`;
  if (existsSync(ATM0S_BUNDLE) && readFileSync(ATM0S_BUNDLE, 'utf8').startsWith(stamp)) return ATM0S_BUNDLE;
  const esbuild = await import('esbuild');
  mkdirSync(BUILD_DIR, { recursive: true });
  await esbuild.build({
    entryPoints: [SDK_ENTRY],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    outfile: ATM0S_BUNDLE,
    banner: { js: stamp },
    logLevel: 'error',
  });
  return ATM0S_BUNDLE;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const before = existsSync(ATM0S_BUNDLE) ? readFileSync(ATM0S_BUNDLE, 'utf8').slice(0, 200) : null;
  const out = await ensureAtm0sBundle();
  const fresh = before !== readFileSync(out, 'utf8').slice(0, 200);
  console.error(`install-test-deps: atm0s SDK bundle ${fresh ? 'built' : 'up to date'} (${out})`);
}
