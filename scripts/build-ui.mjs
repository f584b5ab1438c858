// Builds the console's front end (console-ui/) into dist/src/console/assets/,
// which the package ships: bundles named by their content hash, and an
// index.html that names them. Offline: esbuild and preact come from node_modules.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = join(root, 'console-ui', 'src');
const out = join(root, 'dist', 'src', 'console', 'assets');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const result = await build({
  entryPoints: { app: join(src, 'main.tsx'), style: join(src, 'styles.css') },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  entryNames: '[name]-[hash]',
  outdir: out,
  metafile: true,
  logLevel: 'warning',
});
const names = Object.keys(result.metafile.outputs).map((f) => basename(f));
const js = names.find((n) => n.startsWith('app-') && n.endsWith('.js'));
const css = names.find((n) => n.startsWith('style-') && n.endsWith('.css'));
if (!js || !css) throw new Error(`unexpected build outputs: ${names.join(', ')}`);
const html = readFileSync(join(src, 'index.html'), 'utf8').replace('__JS__', js).replace('__CSS__', css);
writeFileSync(join(out, 'index.html'), html);
for (const n of names) if (n.endsWith('.map')) rmSync(join(out, n));
