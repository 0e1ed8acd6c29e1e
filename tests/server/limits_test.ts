/** The request limits and the cached `!list` answer (PROTOCOL.md section 5.2). */

import assert from "node:assert/strict";
import {
  ListCache,
  MemoryPresence,
  REQUEST_LIMITS,
  RequestLimits,
} from "../../lib/server/mod.ts";
import { identities } from "../_helpers.ts";

Deno.test("RequestLimits: a burst, then one token per refill interval, per user and per kind", () => {
  const l = new RequestLimits({ session: { burst: 3, refillMs: 100 } });
  for (let i = 0; i < 3; i++) assert.ok(l.take("A", "session", 0));
  assert.equal(l.take("A", "session", 0), false, "the burst is spent");
  assert.equal(
    l.take("A", "session", 99),
    false,
    "no token before the interval",
  );
  assert.ok(l.take("A", "session", 100), "one token after it");
  assert.equal(l.take("A", "session", 100), false);
  assert.ok(l.take("B", "session", 0), "another user has its own bucket");
  assert.ok(l.take("A", "list", 0), "another kind has its own bucket");
  // Refills never exceed the burst.
  for (let i = 0; i < 3; i++) assert.ok(l.take("A", "session", 10_000));
  assert.equal(l.take("A", "session", 10_000), false);
});

Deno.test("REQUEST_LIMITS are those of PROTOCOL.md sections 5.2, 9.8 and 10.4: mail and rooms 100, then 20 a second", () => {
  assert.deepEqual(REQUEST_LIMITS, {
    list: { burst: 10, refillMs: 1000 },
    session: { burst: 10, refillMs: 1000 },
    host: { burst: 10, refillMs: 1000 },
    send: { burst: 100, refillMs: 50 },
    keys: { burst: 10, refillMs: 1000 },
    publish: { burst: 10, refillMs: 1000 },
    room: { burst: 100, refillMs: 50 },
  });
});

Deno.test("ListCache builds the answer once per change of presence, and sees every change", () => {
  const p = new MemoryPresence();
  p.join("A", "local");
  const cache = new ListCache(p, 2);
  const first = cache.answer();
  assert.strictEqual(cache.answer(), first, "no change: the same answer");
  assert.deepEqual(first, { users: [{ name: "A", state: "IDLE" }], more: 0 });
  p.join("B", "local");
  p.join("C", "local");
  const second = cache.answer();
  assert.notStrictEqual(second, first);
  assert.deepEqual(second.users.map((u) => u.name), ["A", "B"]);
  assert.equal(second.more, 1);
  p.update("A", { state: "HOSTING", addr: "x:1" });
  assert.equal(cache.answer().users[0]?.state, "HOSTING");
  p.leave("C");
  assert.equal(cache.answer().more, 0);
  cache.close();
});

// PROTOCOL.md 5.3: pages of the sorted users, by `after`, `limit` and
// `prefix`; never sorted per request.
Deno.test("ListCache pages: after and limit walk every user once in order; prefix keeps only its names (not neighbours in localeCompare's order); more counts what matched beyond the page", () => {
  const names = ["a", "A", "a_b", "a-b", "ab", "aB", "ac", "B", "b-", "c"];
  const p = new MemoryPresence();
  for (const n of [...names].reverse()) p.join(n, "local");
  let lists = 0;
  const counted = new Proxy(p, {
    get(target, key) {
      if (key === "list") return () => (lists++, target.list());
      const v = Reflect.get(target, key, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  const cache = new ListCache(counted, 4);
  const sorted = [...names].sort((x, y) => x.localeCompare(y));
  // Every page of 3 after the last name shown: each user once, in order.
  const seen: string[] = [];
  let after: string | undefined;
  for (;;) {
    const page = cache.answer({ limit: 3, ...(after && { after }) });
    seen.push(...page.users.map((u) => u.name));
    assert.equal(page.more, names.length - seen.length, `more after ${after}`);
    if (page.more === 0) break;
    after = seen.at(-1);
  }
  assert.deepEqual(seen, sorted);
  // A limit above the server's cap is cut to it; no fields: the first page.
  assert.deepEqual(cache.answer({ limit: 1000 }).users.length, 4);
  assert.deepEqual(cache.answer().users.map((u) => u.name), sorted.slice(0, 4));
  assert.equal(cache.answer().more, names.length - 4);
  // `after` need not be online; one sorting after everyone: an empty page.
  assert.deepEqual(
    cache.answer({ after: "aa" }).users.map((u) => u.name),
    sorted.filter((n) => n.localeCompare("aa") > 0).slice(0, 4),
  );
  assert.deepEqual(cache.answer({ after: "zz" }), { users: [], more: 0 });
  // A prefix: "A" sorts between "a" and "a_b" and is not listed.
  const a = cache.answer({ prefix: "a" });
  assert.deepEqual(a.users.map((u) => u.name), ["a", "a_b", "a-b", "ab"]);
  assert.equal(a.more, 2, '"aB" and "ac" beyond the page');
  assert.deepEqual(
    cache.answer({ prefix: "a", after: "ab" }).users.map((u) => u.name),
    ["aB", "ac"],
  );
  assert.deepEqual(cache.answer({ prefix: "b" }).users.map((u) => u.name), [
    "b-",
  ]);
  assert.deepEqual(cache.answer({ prefix: "d" }), { users: [], more: 0 });
  assert.deepEqual(cache.answer({ prefix: "B" }).users.map((u) => u.name), [
    "B",
  ]);
  assert.equal(
    lists,
    1,
    "presence read once for every request since the change",
  );
  p.leave("c");
  assert.equal(cache.answer({ prefix: "c" }).users.length, 0);
  cache.answer({ after: "a" });
  assert.equal(lists, 2, "read again once after a change");
  cache.close();
});

// PROTOCOL.md 5: the `users` answer fits one record at any frame limit
// `im serve --max-frame` allows; the rest are counted in `more`.
Deno.test("serverSettings caps listMax so a full users answer of 32-character HOSTING names fits one record at the frame limit", async () => {
  const { serverSettings } = await import("../../lib/server/mod.ts");
  const { encodeMessage } = await import("../../lib/proto/mod.ts");
  const { RECORD_HEADER_BYTES, RECORD_TAG_BYTES } = await import(
    "../../lib/record/mod.ts"
  );
  const ids = await identities();
  for (const maxFrameBytes of [1024, 4096, 65536]) {
    const c = serverSettings({
      identity: ids.server,
      clients: new Map(),
      maxFrameBytes,
    });
    const users = Array.from({ length: c.listMax }, (_, i) => ({
      name: `${i}`.padStart(32, "x"),
      state: "HOSTING" as const,
    }));
    const body = encodeMessage({
      t: "users",
      users,
      more: 999_999_999,
      req: 4294967295,
    });
    const record = 1 + RECORD_HEADER_BYTES + body.length + RECORD_TAG_BYTES;
    assert.ok(record <= maxFrameBytes, `${maxFrameBytes}: ${record}`);
    assert.ok(c.listMax >= 1);
  }
  assert.equal(
    serverSettings({ identity: ids.server, clients: new Map() }).listMax,
    1000,
    "the default frame holds the default 1,000",
  );
});
