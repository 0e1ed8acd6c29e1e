import assert from "node:assert/strict";
import { MemoryPresence } from "../../lib/server/mod.ts";
import { presenceContract } from "./presence_contract.ts";

presenceContract("MemoryPresence", () => ({ presence: new MemoryPresence() }));

Deno.test("MemoryPresence: a listener that throws is reported, and the others are still told", () => {
  const errors: unknown[] = [];
  const p = new MemoryPresence({ onListenerError: (e) => errors.push(e) });
  const seen: string[] = [];
  p.subscribe(() => {
    throw new Error("listener bug");
  });
  p.subscribe((c) => seen.push(`${c.kind} ${c.entry.name}`));
  p.join("A", "local");
  p.leave("A");
  assert.deepEqual(seen, ["join A", "leave A"]);
  assert.equal(errors.length, 2);
  assert.equal(p.size, 0, "the changes happened");
});

Deno.test("MemoryPresence: entries are frozen, so a holder cannot change what others read", () => {
  const p = new MemoryPresence();
  const e = p.join("A", "local");
  assert.throws(() => {
    (e as { state: string }).state = "BUSY";
  }, TypeError);
  assert.equal(p.get("A")?.state, "IDLE");
});

Deno.test("MemoryPresence: list() is always every online entry sorted by name, through 5,000 seeded joins, leaves, rejoins and updates (the sorted index, issue 15)", () => {
  const p = new MemoryPresence();
  const expected = new Map<string, string>();
  let seed = 0x9e3779b9;
  const next = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 2 ** 32;
  };
  // Upper and lower case, digits, _ and -: where localeCompare and byte
  // order disagree.
  const alphabet = "aAbBzZ09_-";
  const name = () =>
    Array.from(
      { length: 1 + Math.floor(next() * 3) },
      () => alphabet[Math.floor(next() * alphabet.length)],
    ).join("");
  for (let i = 0; i < 5000; i++) {
    const n = name();
    const r = next();
    if (r < 0.5) {
      p.join(n, "local");
      expected.set(n, "IDLE");
    } else if (r < 0.8) {
      p.leave(n);
      expected.delete(n);
    } else if (p.update(n, { state: "HOSTING", addr: "127.0.0.1:1" })) {
      expected.set(n, "HOSTING");
    }
    if (i % 50 === 0 || i > 4950) {
      const want = [...expected].sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => `${k} ${v}`);
      assert.deepEqual(p.list().map((e) => `${e.name} ${e.state}`), want);
    }
  }
  assert.ok(expected.size > 20, `${expected.size} online at the end`);
});
