// The tracker's encoder (attune-core compiled to wasm) reproduces the golden
// MessagePack bytes exactly.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const golden = JSON.parse(fs.readFileSync(new URL("../../core/testdata/golden.json", import.meta.url), "utf8"));
const { encodeBatchJson } = require("../dist/golden/attune_tracker.js");

test("golden batches encode to their exact MessagePack bytes in wasm", () => {
  assert.ok(golden.codec.length > 0);
  for (const c of golden.codec) {
    const bytes = encodeBatchJson(JSON.stringify(c.batch));
    assert.equal(Buffer.from(bytes).toString("hex"), c.msgpack_hex, c.name);
  }
});

test("golden bad batches are refused with their field named", () => {
  for (const c of golden.invalid) {
    assert.throws(() => encodeBatchJson(JSON.stringify(c.batch)), (e) => String(e).includes(c.error_field ?? ""), c.name);
  }
});
