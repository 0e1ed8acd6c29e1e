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
