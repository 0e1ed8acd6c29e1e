import assert from "node:assert/strict";
import type { PublicIdentity } from "../../lib/crypto/mod.ts";
import {
  MemoryPresence,
  type PresenceChange,
  Registry,
} from "../../lib/server/mod.ts";
import { fakeSession } from "./_parts.ts";

function setup() {
  const presence = new MemoryPresence();
  const changes: string[] = [];
  presence.subscribe((c: PresenceChange) =>
    changes.push(`${c.kind} ${c.entry.name} ${c.entry.state}`)
  );
  return { presence, registry: new Registry(presence, "node-7"), changes };
}

Deno.test("Registry.add() puts the user online IDLE on its node; remove() takes it off and returns its last entry", () => {
  const { presence, registry, changes } = setup();
  const a = fakeSession("A");
  assert.deepEqual(registry.add(a), {});
  assert.equal(registry.get("A"), a);
  assert.deepEqual({ ...presence.get("A") }, {
    name: "A",
    node: "node-7",
    state: "IDLE",
  });
  presence.update("A", { state: "HOSTING", addr: "x:1" });
  const last = registry.remove(a);
  assert.equal(last?.state, "HOSTING");
  assert.equal(registry.has("A"), false);
  assert.equal(presence.get("A"), undefined);
  assert.equal(registry.size, 0);
  assert.deepEqual(changes, [
    "join A IDLE",
    "update A HOSTING",
    "leave A HOSTING",
  ]);
});

Deno.test("Registry.add() of a user already connected replaces the older connection; the older one's remove() changes nothing (rule 2.10)", () => {
  const { presence, registry, changes } = setup();
  const older = fakeSession("A"), newer = fakeSession("A");
  registry.add(older);
  presence.update("A", { state: "BUSY", partner: "B", isHost: true });
  const r = registry.add(newer);
  assert.equal(r.older, older);
  assert.equal(r.left?.partner, "B", "the older login's last entry");
  assert.equal(registry.get("A"), newer);
  assert.equal(presence.get("A")?.state, "IDLE");
  assert.equal(registry.remove(older), undefined);
  assert.equal(registry.get("A"), newer, "still online");
  assert.equal(presence.get("A")?.state, "IDLE");
  assert.deepEqual(changes.slice(-2), ["leave A BUSY", "join A IDLE"]);
  assert.equal(registry.remove(newer)?.name, "A");
  assert.equal(presence.size, 0);
});

Deno.test("Registry and presence agree through any order of adds and removes: one source of truth for who is online", () => {
  const { presence, registry } = setup();
  const live = new Map<string, ReturnType<typeof fakeSession>>();
  const all: Array<ReturnType<typeof fakeSession>> = [];
  let seed = 7;
  const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  for (let i = 0; i < 500; i++) {
    const user = "ABCDE"[rnd(5)]!;
    if (rnd(2) === 0) {
      const s = fakeSession(user);
      registry.add(s);
      live.set(user, s);
      all.push(s);
    } else if (all.length > 0) {
      const s = all[rnd(all.length)]!;
      registry.remove(s);
      if (live.get(s.user) === s) live.delete(s.user);
    }
    assert.deepEqual(
      presence.list().map((e) => e.name),
      [...live.keys()].sort(),
      `step ${i}`,
    );
    assert.equal(registry.size, presence.size);
  }
});

Deno.test("Registry.outbox() sends on the user's channel and reports its transport's queued bytes; none for a user not connected", async () => {
  const { registry } = setup();
  const a = fakeSession("A");
  registry.add(a);
  const box = registry.outbox("A")!;
  await box.send({ t: "cancelled", peer: "B", message: "m" });
  assert.deepEqual(a.sent, [{ t: "cancelled", peer: "B", message: "m" }]);
  a.queuedBytes = 4096;
  assert.equal(box.queuedBytes, 4096);
  assert.equal(registry.outbox("B"), undefined);
});

Deno.test("Registry.revoked() names the connections whose key was removed or changed, and no others", () => {
  const { registry } = setup();
  const key = (fingerprint: string) => ({ fingerprint }) as PublicIdentity;
  registry.add(fakeSession("A", "fa"));
  registry.add(fakeSession("B", "fb"));
  registry.add(fakeSession("C", "fc"));
  const dir = new Map([["A", key("fa")], ["B", key("other")]]);
  assert.deepEqual(registry.revoked(dir).map((s) => s.user).sort(), ["B", "C"]);
});
