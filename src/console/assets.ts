/**
 * The console's built front end (console-ui/, bundled by scripts/build-ui.mjs
 * into dist/src/console/assets/, shipped in the package). Read into memory
 * once: a few files of some tens of KiB, sent gzip-compressed to clients that
 * accept it. Any /ui path that is not a file is the single page's index.html,
 * so a reload or a shared link lands on the same view.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

// No inline script or style, no other origin: the page can only run its own bundle.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

interface Asset {
  type: string;
  body: Buffer;
  gzip: Buffer;
}

export const ASSETS_DIR = fileURLToPath(new URL('./assets/', import.meta.url));

export function loadAssets(dir = ASSETS_DIR): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  if (!existsSync(dir)) return assets;
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (!type) continue;
    const body = readFileSync(join(dir, name));
    assets.set(name, { type, body, gzip: gzipSync(body, { level: 9 }) });
  }
  return assets;
}

export function assetRoutes(assets = loadAssets()) {
  const sendAsset = (req: FastifyRequest, reply: FastifyReply, asset: Asset, cache: string) => {
    const gzip = /\bgzip\b/.test(req.headers['accept-encoding'] ?? '');
    reply
      .code(200)
      .headers({ 'Content-Type': asset.type, 'Cache-Control': cache, 'Content-Security-Policy': CSP, 'Referrer-Policy': 'no-referrer', Vary: 'Accept-Encoding' });
    if (gzip) reply.header('Content-Encoding', 'gzip');
    return reply.send(gzip ? asset.gzip : asset.body);
  };
  return (app: FastifyInstance) => {
    const page = async (req: FastifyRequest, reply: FastifyReply) => {
      const path = (req.raw.url ?? '').split('?')[0]!;
      const name = path.startsWith('/ui/') ? path.slice(4) : '';
      const file = name !== '' && !name.includes('/') ? assets.get(name) : undefined;
      // Bundles are named by their content hash, so they never change under a name.
      if (file && name !== 'index.html') return sendAsset(req, reply, file, 'public, max-age=31536000, immutable');
      const index = assets.get('index.html');
      if (!index) return reply.code(503).type('text/plain').send('the console was not built: run npm run build');
      return sendAsset(req, reply, index, 'no-cache');
    };
    app.get('/ui', page);
    app.get('/ui/*', page);
  };
}
