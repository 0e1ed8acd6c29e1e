/**
 * `im serve --sign-workers N` (issue 15): the logins' signatures made by a
 * pool of N workers; the server says how many in its `listening` line, a
 * user logs in through it, and Ctrl-C stops it cleanly (the workers ended);
 * a bad count is one usage line, exit 2, before anything starts.
 * @module
 */

import assert from "node:assert/strict";
import { runIm, sharedKeys, withProcs } from "./harness.ts";

const keys = await sharedKeys();

Deno.test("im serve --sign-workers 2: the listening line says 2, a user logs in and lists, the server stops cleanly", async () => {
  await withProcs(keys, async (p) => {
    const server = await p.server({ args: ["--sign-workers", "2"] });
    await server.waitForLog(/ listening .*signWorkers=2/);
    const a = await p.chat(server, "A");
    const list = await a.list();
    assert("A" in list, JSON.stringify(list));
  });
});

Deno.test("im serve without --sign-workers starts one sign worker per core; --sign-workers 0 signs on the main thread", async () => {
  const cores = Math.max(1, navigator.hardwareConcurrency);
  await withProcs(keys, async (p) => {
    const server = await p.server();
    await server.waitForLog(new RegExp(` listening .*signWorkers=${cores}\\b`));
    const zero = await p.server({ args: ["--sign-workers", "0"] });
    await zero.waitForLog(/ listening .*signWorkers=0\b/);
    const a = await p.chat(zero, "A");
    assert("A" in await a.list());
  });
});

Deno.test("im serve --sign-workers with a bad count is one usage line, exit 2, before a key is provisioned", async () => {
  const empty = await Deno.makeTempDir({ prefix: "im-sign-workers-" });
  try {
    for (const bad of ["-1", "1025", "two", "1.5"]) {
      const dir = `${empty}/keys`;
      const r = await runIm(["serve", "--keys", dir, "--sign-workers", bad]);
      assert.equal(r.code, 2, `${bad}: ${r.stderr.join("\n")}`);
      assert.match(r.stderr[0]!, /--sign-workers/);
      assert.deepEqual([...Deno.readDirSync(empty)], [], "nothing made");
    }
  } finally {
    await Deno.remove(empty, { recursive: true });
  }
});
