/**
 * The admission and penalty policies of the server (requirements 1.2 and
 * 2.4) between several addresses, which loopback sockets cannot show: all
 * of them come from 127.0.0.1. resources_test.ts drives the same code
 * through real sockets.
 */

import assert from "node:assert/strict";
import { FailurePenalty, LoginAdmission } from "../../lib/server/mod.ts";

Deno.test("LoginAdmission: a flood from one address evicts only that address's connections, never another user's", () => {
  const gate = new LoginAdmission<string>({ maxTotal: 256, maxPerAddress: 64 });
  assert.deepEqual(gate.admit("10.0.0.9", "victim"), []);
  for (let i = 0; i < 10_000; i++) {
    for (const e of gate.admit("10.6.6.6", `flood${i}`)) {
      assert.notEqual(e, "victim");
    }
  }
  assert.equal(gate.countFor("10.6.6.6"), 64);
  assert.equal(gate.countFor("10.0.0.9"), 1);
  assert.ok(gate.all().includes("victim"));
});

Deno.test("LoginAdmission: at the total cap the oldest connection of the busiest address goes, not the oldest overall", () => {
  const gate = new LoginAdmission<string>({ maxTotal: 10, maxPerAddress: 100 });
  gate.admit("10.0.0.1", "legit-old");
  for (let i = 0; i < 9; i++) gate.admit("10.6.6.6", `flood${i}`);
  assert.equal(gate.size, 10);
  assert.deepEqual(gate.admit("10.0.0.2", "legit-new"), ["flood0"]);
  assert.deepEqual(gate.admit("10.6.6.6", "flood9"), ["flood1"]);
  assert.ok(
    gate.all().includes("legit-old") && gate.all().includes("legit-new"),
  );
  assert.equal(gate.size, 10);
});

Deno.test("LoginAdmission: many attackers cannot keep the total over the cap, and the per-address cap applies to each", () => {
  const gate = new LoginAdmission<string>({ maxTotal: 50, maxPerAddress: 5 });
  for (let i = 0; i < 1000; i++) {
    gate.admit(`10.1.${i % 40}.1`, `c${i}`);
    assert.ok(gate.size <= 50);
  }
  for (let a = 0; a < 40; a++) assert.ok(gate.countFor(`10.1.${a}.1`) <= 5);
});

Deno.test("LoginAdmission: remove() frees a place, and removing twice or something unknown changes nothing", () => {
  const gate = new LoginAdmission<string>({ maxTotal: 2, maxPerAddress: 2 });
  gate.admit("a", "x");
  gate.admit("a", "y");
  assert.ok(gate.remove("a", "x"));
  assert.ok(!gate.remove("a", "x"));
  assert.ok(!gate.remove("b", "y"));
  assert.deepEqual(gate.admit("a", "z"), []);
  assert.equal(gate.size, 2);
});

Deno.test("FailurePenalty: below the limit nothing happens; at it a penalty starts, doubles up to its cap, and other addresses are not touched", () => {
  const p = new FailurePenalty({
    limit: 3,
    basePenaltyMs: 1000,
    maxPenaltyMs: 4000,
  });
  assert.equal(p.recordFailure("a", 0), 0);
  assert.equal(p.recordFailure("a", 0), 0);
  assert.equal(p.penalty("a", 0), 0);
  assert.equal(p.recordFailure("a", 0), 1000);
  assert.equal(p.penalty("a", 500), 500);
  assert.equal(p.recordFailure("a", 1000), 2000);
  assert.equal(p.recordFailure("a", 3000), 4000);
  assert.equal(p.recordFailure("a", 7000), 4000, "capped");
  assert.equal(p.penalty("b", 7000), 0);
});

Deno.test("FailurePenalty: failures older than the window are forgotten once no penalty runs", () => {
  const p = new FailurePenalty({
    limit: 2,
    basePenaltyMs: 1000,
    windowMs: 60_000,
  });
  p.recordFailure("a", 0);
  assert.equal(p.recordFailure("a", 61_000), 0, "a fresh count");
});

Deno.test("FailurePenalty: the table stays bounded under a flood of addresses", () => {
  const p = new FailurePenalty({
    limit: 5,
    basePenaltyMs: 1000,
    maxEntries: 1000,
  });
  for (let i = 0; i < 20_000; i++) {
    p.recordFailure(`10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, i);
  }
  assert.ok(p.size <= 1001, `size ${p.size}`);
});
