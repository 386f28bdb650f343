// Browser bundle for pages: dist/mediamesh-sdk.js, one ES module with @bufbuild/protobuf
// inside (run by `npm run build` after tsc).
import { build } from 'esbuild';

await build({
  entryPoints: ['src/index.ts'],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  sourcemap: true,
  outfile: 'dist/mediamesh-sdk.js',
  legalComments: 'none',
  logLevel: 'error',
});
