/**
 * Rooms through the real programs (PROTOCOL.md section 10): `im serve` with
 * its SQLite data directory and `im chat` processes over loopback TCP with
 * their key directories, as a user runs them: a room made and written to by
 * A, read by B at once and by C, offline, after a `kill -9` of the server;
 * the database never holds a room's text; the room state on disk is 0600
 * in a 0700 folder.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type ChatEvent,
  ChatProc,
  containsBytes,
  type Procs,
  type ServerProc,
  sharedKeys,
  withProcs,
} from "./harness.ts";

const keys = await sharedKeys();
const WAIT_MS = 20_000;

const roomIn = (e: ChatEvent) =>
  e.type === "message" && e.direction === "in" && e.room === "team";

/** Log `user` in once (its mailbox keys go to the server), then out. */
async function publishThenLeave(
  p: Procs,
  server: ServerProc,
  user: string,
  keyDir: string,
): Promise<void> {
  const c = await p.chat(server, user, { keys: keyDir });
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const since = c.events.length;
    await c.send("!whoami");
    const who = await c.waitFor(
      (e) => e.type === "system" && /^You are /.test(e.text ?? ""),
      WAIT_MS,
      since,
    );
    if (/one-time prekeys on the server/.test(who.text ?? "")) break;
    if (Date.now() > deadline) assert.fail(`${user} never published`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await c.closeStdin();
  assert.equal((await c.wait()).code, 0);
}

Deno.test("im chat: A makes a room and writes to it, B reads it at once, C (offline) after a kill -9 of the server; the database holds no text; room files are private", async () => {
  await withProcs(keys, async (p) => {
    const keyDir = await p.copyKeys();
    const dir = await Deno.makeTempDir({ prefix: "im-e2e-room-" });
    p.defer(() => Deno.remove(dir, { recursive: true }));
    const data = join(dir, "data");
    const args = ["--data", data];
    const server = await p.server({ keys: keyDir, args });
    for (const u of ["B", "C"]) await publishThenLeave(p, server, u, keyDir);

    const [a, b] = await p.chats(server, ["A", "B"], { keys: keyDir });
    await a!.send("!room create team B C");
    await b!.waitFor(
      (e) => e.type === "room" && e.room === "team" && e.change === "created",
      WAIT_MS,
    );
    const text = "secret room line";
    await a!.send(`#team ${text}`);
    const got = await b!.waitFor(roomIn, WAIT_MS);
    assert.equal(got.text, text);
    assert.equal(got.from, "A");
    await a!.waitFor(
      (e) => e.type === "receipt" && e.via === "room" && e.status === "stored",
      WAIT_MS,
    );

    // Sealed on disk: no text in the database or its write-ahead log.
    for await (const f of Deno.readDir(data)) {
      if (!f.isFile) continue;
      const bytes = await Deno.readFile(join(data, f.name));
      assert.ok(
        !containsBytes(bytes, new TextEncoder().encode(text)),
        `${f.name} holds the text`,
      );
    }
    // A's room state: 0600 in a 0700 folder.
    const rooms = join(keyDir, "users", "A", "rooms");
    assert.equal((await Deno.stat(rooms)).mode! & 0o777, 0o700);
    assert.equal(
      (await Deno.stat(join(rooms, "room-7465616d.json"))).mode! & 0o777,
      0o600,
    );

    // The server dies at once; C logs in to the restarted one and reads
    // the room, as a script does (plain output, stdin closed).
    assert.equal((await server.kill()).signal, "SIGKILL");
    const again = await p.server({ keys: keyDir, port: server.port, args });
    const c = new ChatProc("C", [
      "--user",
      "C",
      "--server",
      again.addr,
      "--keys",
      keyDir,
    ]);
    p.all.push(c);
    await c.closeStdin();
    const st = await c.wait(WAIT_MS * 2);
    const out = c.stdout.lines.join("\n");
    assert.equal(st.code, 0, out);
    assert.match(out, /\[#team\] A created the room: A, B, C/);
    assert.match(out, /\[#team\] A: secret room line/);
  });
});
