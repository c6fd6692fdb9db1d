// The tracker's encoder (attune-core compiled to wasm) reproduces the golden
// MessagePack bytes exactly.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const golden = JSON.parse(fs.readFileSync(new URL("../../core/testdata/golden.json", import.meta.url), "utf8"));
const growthbook = JSON.parse(fs.readFileSync(new URL("../../core/testdata/growthbook.json", import.meta.url), "utf8"));
const { encodeBatchJson, experimentHash, experimentBucketRanges, experimentChooseArm, experimentInNamespace } = require("../dist/golden/attune_tracker.js");

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

test("experiment assignment in wasm reproduces GrowthBook's cross-language vectors", () => {
  const close = (a, b) => Math.abs(a - b) < 1e-9;
  for (const [seed, value, version, want] of growthbook.hash) {
    assert.equal(experimentHash(seed, value, version) ?? null, want, `hash(${seed}, ${value}, v${version})`);
  }
  for (const [name, [arms, coverage, weights], want] of growthbook.getBucketRange) {
    const got = experimentBucketRanges(arms, coverage, weights ? Float64Array.from(weights) : undefined);
    assert.equal(got.length, want.length * 2, name);
    want.flat().forEach((w, i) => assert.ok(close(got[i], w), `${name}: ${got}`));
  }
  for (const [name, position, ranges, want] of growthbook.chooseVariation) {
    assert.equal(experimentChooseArm(position, Float64Array.from(ranges.flat())), want, name);
  }
  for (const [name, unit, [id, start, end], want] of growthbook.inNamespace) {
    assert.equal(experimentInNamespace(unit, id, start, end), want, name);
  }
});
