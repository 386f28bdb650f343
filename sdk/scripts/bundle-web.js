// The SDK bundle the server embeds for its demo room page: ../web/demo/mediamesh-sdk.js,
// one minified ES module with @bufbuild/protobuf inside (`npm run bundle:web`). The
// output is deterministic; scripts/test.sh rebuilds it to a temporary file and fails when
// the committed copy differs. Usage: node scripts/bundle-web.js [outfile]
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const outfile = resolve(process.argv[2] ?? resolve(here, '../../web/demo/mediamesh-sdk.js'));

await build({
  absWorkingDir: resolve(here, '..'),
  entryPoints: ['src/index.ts'],
  bundle: true,
  minify: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  legalComments: 'none',
  outfile,
  logLevel: 'error',
});
