import assert from "node:assert/strict";
import { test } from "node:test";

import { fitWithin, humanSize, percent } from "./sizes.js";

test("sizes for people", () => {
  assert.equal(humanSize(0), "0 B");
  assert.equal(humanSize(1023), "1023 B");
  assert.equal(humanSize(1536), "1.5 KB");
  assert.equal(humanSize(5 * 1024 * 1024), "5.0 MB");
  assert.equal(humanSize(3 * 1024 ** 3), "3.0 GB");
});

test("images fit 256 px on their longest side, never scaled up", () => {
  assert.deepEqual(fitWithin(1024, 768, 256), { width: 256, height: 192 });
  assert.deepEqual(fitWithin(300, 1200, 256), { width: 64, height: 256 });
  assert.deepEqual(fitWithin(100, 50, 256), { width: 100, height: 50 });
  assert.deepEqual(fitWithin(10_000, 1, 256), { width: 256, height: 1 }, "at least a pixel");
  assert.deepEqual(fitWithin(0, 0, 256), { width: 256, height: 256 });
});

test("progress as a percentage", () => {
  assert.equal(percent(0, 0), 0);
  assert.equal(percent(1, 3), 33);
  assert.equal(percent(5, 5), 100);
  assert.equal(percent(6, 5), 100);
});
