// The React test app (react/app.jsx) for the browser: esbuild bundles it with react,
// react-dom (tests/e2e/node_modules, pinned in package.json) and our SDK's tsc output
// (sdk/dist/react/index.js and the modules it imports, with @bufbuild/protobuf from
// sdk/node_modules) into one ES module, build/react-app.js (gitignored), served to
// pages/react.html at /build/react-app.js. React's development build (StrictMode double
// effects, hook warnings). Rebuilt only when its inputs change: package-lock.json here,
// react/app.jsx, this script, the SDK's dist modules and sdk/package-lock.json.
//   node lib/bundle-react.js      builds it if needed (scripts/install-test-deps.sh runs this)
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { E2E_DIR, REPO_DIR } from './server.js';
import { BUILD_DIR } from './bundle.js';

export const REACT_BUNDLE = join(BUILD_DIR, 'react-app.js');
export const REACT_VERSION = '19.3.1';
const APP_ENTRY = join(E2E_DIR, 'react', 'app.jsx');
const SDK_DIR = join(REPO_DIR, 'sdk');
const SDK_DIST = join(SDK_DIR, 'dist');
const SDK_ENTRIES = {
  '@mediamesh/sdk': join(SDK_DIST, 'index.js'),
  '@mediamesh/sdk/react': join(SDK_DIST, 'react', 'index.js'),
};

/** sdk/dist's ES modules (not the browser bundle mediamesh-sdk.js, not maps), sorted. */
function sdkModules(dir = SDK_DIST) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...sdkModules(p));
    else if (e.name.endsWith('.js') && e.name !== 'mediamesh-sdk.js') out.push(p);
  }
  return out.sort();
}

function inputsHash() {
  const h = createHash('sha256');
  const files = [join(E2E_DIR, 'package-lock.json'), APP_ENTRY, fileURLToPath(import.meta.url),
    join(SDK_DIR, 'package-lock.json'), ...sdkModules()];
  for (const f of files) { h.update(relative(REPO_DIR, f)); h.update('\0'); h.update(readFileSync(f)); }
  return h.digest('hex').slice(0, 16);
}

const ONE_REACT = Symbol('resolved from tests/e2e');

// `@mediamesh/sdk` and `@mediamesh/sdk/react` are sdk/dist's modules (what the package's
// exports map names). React has to be ONE copy for react-dom, the app and the hooks:
// sdk/dist/react/index.js would otherwise get sdk/node_modules/react (the SDK's dev
// dependency) and every hook would fail with "Invalid hook call".
const resolvePlugin = {
  name: 'mediamesh-e2e-react',
  setup(build) {
    build.onResolve({ filter: /^@mediamesh\/sdk(\/react)?$/ }, (a) => ({ path: SDK_ENTRIES[a.path] }));
    build.onResolve({ filter: /^(react|react-dom|scheduler)(\/.*)?$/ }, (a) => {
      if (a.pluginData === ONE_REACT) return undefined;
      return build.resolve(a.path, { kind: a.kind, resolveDir: E2E_DIR, pluginData: ONE_REACT });
    });
  },
};

/** Builds build/react-app.js unless it is up to date; returns its path. */
export async function ensureReactBundle() {
  for (const f of Object.values(SDK_ENTRIES)) {
    if (!existsSync(f)) throw new Error(`${f} not found: run scripts/install-test-deps.sh (npm ci && npm run build in sdk/)`);
  }
  for (const pkg of ['react', 'react-dom']) {
    const pj = join(E2E_DIR, 'node_modules', pkg, 'package.json');
    const version = existsSync(pj) ? JSON.parse(readFileSync(pj, 'utf8')).version : 'none';
    if (version !== REACT_VERSION) {
      throw new Error(`tests/e2e/node_modules has ${pkg} ${version}, expected ${REACT_VERSION}: run scripts/install-test-deps.sh`);
    }
  }
  const stamp = `/* mediamesh-e2e: react/app.jsx + react ${REACT_VERSION} (development) + sdk/dist bundled by esbuild; inputs ${inputsHash()} */`;
  if (existsSync(REACT_BUNDLE) && readFileSync(REACT_BUNDLE, 'utf8').startsWith(stamp)) return REACT_BUNDLE;
  const esbuild = await import('esbuild');
  mkdirSync(BUILD_DIR, { recursive: true });
  const result = await esbuild.build({
    absWorkingDir: E2E_DIR,
    entryPoints: [APP_ENTRY],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    jsx: 'automatic',
    jsxDev: true,
    define: { 'process.env.NODE_ENV': '"development"' },
    plugins: [resolvePlugin],
    metafile: true,
    outfile: REACT_BUNDLE,
    banner: { js: stamp },
    logLevel: 'error',
  });
  // Guard the one-React rule and that the hooks really come from sdk/dist.
  const inputs = Object.keys(result.metafile.inputs).map((p) => p.split(sep).join('/'));
  const reacts = [...new Set(inputs.filter((p) => /node_modules\/react\//.test(p)).map((p) => p.replace(/node_modules\/react\/.*/, 'node_modules/react')))];
  if (reacts.length !== 1 || !inputs.some((p) => p.endsWith('sdk/dist/react/index.js'))) {
    throw new Error(`build/react-app.js: expected one react and sdk/dist/react/index.js among the inputs, got react copies ${JSON.stringify(reacts)}`);
  }
  return REACT_BUNDLE;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const before = existsSync(REACT_BUNDLE) ? readFileSync(REACT_BUNDLE, 'utf8').slice(0, 200) : null;
  const out = await ensureReactBundle();
  const fresh = before !== readFileSync(out, 'utf8').slice(0, 200);
  console.error(`install-test-deps: React test app bundle ${fresh ? 'built' : 'up to date'} (${out})`);
}
