import assert from "node:assert/strict";
import { test } from "node:test";

import { classes, updateMe, weakness } from "./account.js";
import type { Fetch } from "./rest.js";

test("a password's classes are counted as the server counts them", () => {
  assert.equal(classes("abcdefgh"), 1);
  assert.equal(classes("abcDEF12"), 3);
  assert.equal(classes("aB3!"), 4);
  assert.equal(classes("预算预算"), 1);
  assert.equal(classes("预算2026budget"), 3);
});

test("a weak password is told what it lacks before it is sent", () => {
  const policy = { min_length: 10, min_classes: 3, history: 0, max_age_days: 0 };
  assert.equal(weakness(policy, "Ab1"), "short");
  assert.equal(weakness(policy, "abcdefghijk"), "classes");
  assert.equal(weakness(policy, "abcdefgH1jk"), null);
});

test("one's own fields go in a PATCH of /api/v1/me and a refusal reads as the server said it", async () => {
  const seen: { url: string; method?: string; body?: unknown }[] = [];
  const fetchFn: Fetch = async (url, init) => {
    seen.push({ url, method: init.method, body: init.body });
    return new Response(JSON.stringify({ code: "INVALID", message: "phone is longer than 64 characters" }), { status: 400 });
  };
  await assert.rejects(updateMe("tok", { phone: "1".repeat(65) }, fetchFn), /longer than 64/);
  assert.deepEqual(seen, [{ url: "/api/v1/me", method: "PATCH", body: JSON.stringify({ phone: "1".repeat(65) }) }]);
});
