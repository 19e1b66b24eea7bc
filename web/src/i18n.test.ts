import assert from "node:assert/strict";
import { test } from "node:test";

import { allKeys, browserLang, languages, table, translate } from "./i18n.js";

test("every string has a Chinese and an English text", () => {
  for (const lang of languages) {
    for (const key of allKeys) assert.ok(table(lang)[key]?.length, `${lang} ${key}`);
  }
});

test("the browser's language is the default", () => {
  assert.equal(browserLang(["zh-TW", "en"]), "zh-CN");
  assert.equal(browserLang(["en-GB"]), "en");
  assert.equal(browserLang(["fr", "zh"]), "zh-CN");
  assert.equal(browserLang([]), "en");
});

test("parameters are filled in", () => {
  assert.equal(translate("en", "list.unread", { count: 3 }), "3 unread");
  assert.equal(translate("zh-CN", "list.unread", { count: 3 }), "3 条未读");
});
