/**
 * End to end, with real processes: `im chat` pins its partners' keys in its
 * key directory on first use (PROTOCOL.md section 6, key continuity), and
 * refuses a session when the server names another key for a pinned
 * partner, until the pin file is removed.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { runIm, sharedKeys, withProcs } from "./harness.ts";
import { ended, errorCode, session, started } from "./_chat.ts";

const keys = await sharedKeys();
const posix = Deno.build.os !== "windows";

const pinnedLine = (peer: string) => (e: { type: string; text?: string }) =>
  e.type === "system" &&
  (e.text ?? "").startsWith(`First session with ${peer}: `);

Deno.test("im chat pins B's key in keys/users/A/peers/B.pem on the first session (0600, 0700 folder); B re-enrolled with a new key is refused by A with peer-key-changed naming both fingerprints, until A removes the pin", async () => {
  await withProcs(keys, async (p) => {
    const dir = await p.copyKeys();
    const server = await p.server({ keys: dir, args: ["--no-watch"] });
    const [a, b] = await p.chats(server, ["A", "B"], { keys: dir });
    await session(a!, b!);
    const pinB = join(dir, "users/A/peers/B.pem");
    const pinA = join(dir, "users/B/peers/A.pem");
    assert.equal(
      await Deno.readTextFile(pinB),
      await Deno.readTextFile(join(dir, "server/clients/B.pem")),
    );
    assert.equal(
      await Deno.readTextFile(pinA),
      await Deno.readTextFile(join(dir, "server/clients/A.pem")),
    );
    if (posix) {
      assert.equal((await Deno.stat(pinB)).mode! & 0o777, 0o600);
      assert.equal(
        (await Deno.stat(join(dir, "users/A/peers"))).mode! & 0o777,
        0o700,
      );
    }
    assert.ok(a!.events.some(pinnedLine("B")));
    assert.ok(b!.events.some(pinnedLine("A")));
    const oldFp = (a!.events.find(pinnedLine("B"))?.text ?? "").match(
      /SHA256:[A-Za-z0-9+/]+/,
    )?.[0];
    assert.ok(oldFp);
    const a0 = a!.events.length;
    await b!.send("!quit");
    await b!.wait();
    await a!.waitFor(ended("B"), undefined, a0);

    // B gets a new key pair, enrolled on the server (as its operator would).
    const kg = await runIm([
      "keygen",
      "--bits",
      "2048",
      "--dir",
      dir,
      "--user",
      "B",
      "--force",
    ]);
    assert.equal(kg.code, 0, kg.stderr.join("\n"));
    server.signal("SIGHUP");
    await server.waitForLog(/reload/);
    const b2 = await p.chat(server, "B", { keys: dir });
    const a1 = a!.events.length, b1 = b2.events.length;
    await b2.send("!session A");
    const refused = await a!.waitFor(
      errorCode("peer-key-changed"),
      undefined,
      a1,
    );
    const text = refused.text ?? "";
    assert.match(text, /WARNING: B's key changed/);
    assert.ok(text.includes(oldFp), "the pinned key");
    const newFp = [...text.matchAll(/SHA256:[A-Za-z0-9+/]+/g)].map((m) => m[0])
      .find((fp) => fp !== oldFp);
    assert.ok(newFp, "and the key the server names now");
    assert.ok(text.includes(pinB), "and the pin to remove");
    await b2.waitFor(ended("A"), undefined, b1);
    assert.ok(!a!.events.slice(a1).some(started("B")));
    assert.ok(!b2.events.slice(b1).some(started("A")));

    // A checks with B out of band, then removes the pin: the new key is pinned.
    await Deno.remove(pinB);
    const a2 = a!.events.length;
    await session(a!, b2, true);
    const line = a!.events.slice(a2).find(pinnedLine("B"));
    assert.ok(line?.text?.includes(newFp!), line?.text);
    assert.equal(
      await Deno.readTextFile(pinB),
      await Deno.readTextFile(join(dir, "server/clients/B.pem")),
    );
  });
});
