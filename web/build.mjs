// Builds the web client into dist/: assets/*-[hash].js|css, referenced from
// dist/index.html, which is the one file served without a hash (no-cache).
import { build } from "esbuild";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join, relative } from "node:path";

const here = new URL(".", import.meta.url).pathname;
const dist = join(here, "dist");
rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, "assets"), { recursive: true });

const result = await build({
  entryPoints: [join(here, "src/main.tsx")],
  outdir: join(dist, "assets"),
  entryNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  bundle: true,
  minify: true,
  sourcemap: "linked",
  target: ["es2020"],
  jsx: "automatic",
  jsxImportSource: "preact",
  metafile: true,
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((p) => relative(dist, join(process.cwd(), p)));
const js = outputs.filter((p) => p.endsWith(".js"));
const css = outputs.filter((p) => p.endsWith(".css"));
if (js.length !== 1) throw new Error(`expected one script, got ${js}`);
const tags = [
  ...css.map((p) => `<link rel="stylesheet" href="/${p}" />`),
  `<script type="module" src="/${js[0]}"></script>`,
].join("\n    ");
const html = readFileSync(join(here, "src/index.html"), "utf8").replace("<!-- assets -->", tags);
writeFileSync(join(dist, "index.html"), html);
console.log(`built ${outputs.map((p) => basename(p)).join(", ")}`);
