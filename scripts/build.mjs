// Bundles the three shipped entry points. main.js and post.js are self-contained (a
// runner has no node_modules); idbot.js keeps the native/server-only drivers external
// and loads them lazily, so join/status/cleanup run from the bundle alone.
import { readFileSync } from "node:fs";
import { build } from "esbuild";

const pkg = JSON.parse(readFileSync("package.json", "utf8"));

const banner = {
  js: "import { createRequire as __idbotCreateRequire } from 'node:module'; const require = __idbotCreateRequire(import.meta.url);",
};
const common = {
  bundle: true,
  platform: "node",
  format: "esm",
  target: "es2022",
  banner,
  legalComments: "none",
  logLevel: "warning",
  charset: "utf8",
};

await build({
  ...common,
  entryPoints: { main: "src/action/main.ts", post: "src/action/post.ts" },
  outdir: "dist",
  alias: { undici: "./scripts/undici-unused.mjs" },
});
await build({
  ...common,
  entryPoints: { idbot: "src/cli/idbot.ts" },
  outdir: "dist",
  banner: { js: `#!/usr/bin/env node\n${banner.js}` },
  define: { IDBOT_VERSION: JSON.stringify(pkg.version) },
  external: ["better-sqlite3", "pg"],
});
