// Bundles the unit tests of web/ (TypeScript) for node and runs them with node:test.
import { build } from "esbuild";
import { readdirSync, rmSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";

const here = new URL(".", import.meta.url).pathname;
const dirs = ["client/test", "src"];
const entryPoints = dirs.flatMap((dir) =>
  readdirSync(join(here, dir))
    .filter((f) => f.endsWith(".test.ts"))
    .map((f) => join(here, dir, f)),
);
const outdir = join(here, ".test-build");
rmSync(outdir, { recursive: true, force: true });
await build({ entryPoints, outdir, outbase: here, bundle: true, platform: "node", format: "esm", outExtension: { ".js": ".mjs" }, packages: "external", logLevel: "warning" });
const files = readdirSync(outdir, { recursive: true })
  .filter((f) => f.endsWith(".test.mjs"))
  .map((f) => join(outdir, f));
const run = spawnSync(process.execPath, ["--test", ...files], { stdio: "inherit" });
process.exit(run.status ?? 1);
