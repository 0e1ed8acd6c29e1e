/**
 * Mailboxes end to end (PROTOCOL.md section 9, issue 12), with real `im
 * serve` and `im chat` processes and the server's SQLite store under
 * `--data`: a message to a user who is offline survives a `kill -9` of the
 * server, is shown once, in order, and its `delivered` receipt reaches the
 * sender; the database never holds a text; piped mode sends with `!msg`
 * and `@user` and waits for the `stored` receipt.
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
/** A mail event's wait: a backlog, a restart and a reconnect take their time on a busy machine. */
const MAIL_WAIT_MS = 20_000;

const mailIn = (e: ChatEvent) => e.type === "mail" && e.direction === "in";
const receipt = (status: string) => (e: ChatEvent) =>
  e.type === "receipt" && e.via === "mail" && e.status === status;

/** A fresh data directory, removed at the end of the test. */
async function dataDir(p: Procs): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "im-e2e-data-" });
  p.defer(() => Deno.remove(dir, { recursive: true }));
  return join(dir, "data");
}

/** Every file the store keeps (the database and its WAL), read whole. */
async function storeFiles(data: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for await (const e of Deno.readDir(data)) {
    if (e.isFile) out.set(e.name, await Deno.readFile(join(data, e.name)));
  }
  return out;
}

/**
 * Log `user` in once so that its client publishes its mailbox keys, then
 * log it out: from then on it is offline, with a mailbox.
 */
async function publishThenLeave(
  p: Procs,
  server: ServerProc,
  user: string,
  keyDir: string,
): Promise<void> {
  const c = await p.chat(server, user, { keys: keyDir });
  // `!whoami` names the one-time prekeys the server holds once it answered
  // the client's `publish`.
  const deadline = Date.now() + MAIL_WAIT_MS;
  for (;;) {
    const since = c.events.length;
    await c.send("!whoami");
    const who = await c.waitFor(
      (e) => e.type === "system" && /^You are /.test(e.text ?? ""),
      MAIL_WAIT_MS,
      since,
    );
    if (/one-time prekeys on the server/.test(who.text ?? "")) break;
    if (Date.now() > deadline) assert.fail(`${user} never published`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await c.closeStdin();
  assert.equal((await c.wait()).code, 0);
}

Deno.test("mail to an offline user survives kill -9 of the server: shown once, in order, after the restart; delivered receipts reach the sender; the database holds no text", async () => {
  await withProcs(keys, async (p) => {
    const keyDir = await p.copyKeys();
    const data = await dataDir(p);
    const args = ["--data", data];
    const server = await p.server({ keys: keyDir, args });
    await publishThenLeave(p, server, "B", keyDir);

    // B's mailbox keys are in its key directory, private.
    const mailDir = join(keyDir, "users", "B", "mail");
    assert.equal((await Deno.stat(mailDir)).mode! & 0o777, 0o700);
    assert.equal(
      (await Deno.stat(join(mailDir, "identity.pem"))).mode! & 0o777,
      0o600,
    );

    const a = await p.chat(server, "A", { keys: keyDir });
    const texts = ["first secret line", "second secret line", "third one"];
    await a.send(`!msg B ${texts[0]}`, `@B ${texts[1]}`, `!msg B ${texts[2]}`);
    await a.waitForCount(receipt("stored"), 3, MAIL_WAIT_MS);

    // The store holds the three messages sealed: no text in the database
    // or its write-ahead log.
    for (const [name, bytes] of await storeFiles(data)) {
      for (const t of texts) {
        assert.ok(
          !containsBytes(bytes, new TextEncoder().encode(t)),
          `${name} holds "${t}"`,
        );
      }
    }

    // kill -9 at once after the stored receipts: they were sent after the commit.
    const st = await server.kill();
    assert.equal(st.signal, "SIGKILL");
    const again = await p.server({ keys: keyDir, port: server.port, args });

    const b = await p.chat(again, "B", { keys: keyDir });
    const shown = await b.waitForCount(mailIn, 3, MAIL_WAIT_MS);
    assert.deepEqual(shown.map((e) => e.text), texts);
    assert.ok(shown.every((e) => e.from === "A" && e.to === "B"));
    // A reconnects to the restarted server and gets the proofs of delivery.
    await a.waitForCount(receipt("delivered"), 3, MAIL_WAIT_MS);

    // Shown once: B logs in again and sees only what is new.
    await b.closeStdin();
    assert.equal((await b.wait()).code, 0);
    const b2 = await p.chat(again, "B", { keys: keyDir });
    await a.send("!msg B fourth");
    const next = await b2.waitFor(mailIn, MAIL_WAIT_MS);
    assert.equal(next.text, "fourth");
    assert.deepEqual(b2.events.filter(mailIn).map((e) => e.text), ["fourth"]);
  });
});

Deno.test("piped im chat: !msg and @user each print the sent mail and its stored receipt, then exit 0; unknown recipients fail the script with exit 3", async () => {
  await withProcs(keys, async (p) => {
    const keyDir = await p.copyKeys();
    const data = await dataDir(p);
    const server = await p.server({ keys: keyDir, args: ["--data", data] });
    await publishThenLeave(p, server, "B", keyDir);

    // Plain text output (no --json), as a shell script would read it.
    const run = async (lines: string[], user = "A") => {
      const c = new ChatProc(user, [
        "--user",
        user,
        "--server",
        server.addr,
        "--keys",
        keyDir,
      ]);
      p.all.push(c);
      await c.send(...lines);
      await c.closeStdin();
      const st = await c.wait();
      return { code: st.code, out: c.stdout.lines.join("\n") };
    };
    const ok = await run(["!msg B hello by pipe", "@B and again"]);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.out, /\[mail\] A to B: hello by pipe/);
    assert.match(ok.out, /\[mail\] A to B: and again/);
    assert.equal(ok.out.match(/stored by the server/g)?.length, 2, ok.out);

    // B's script has no input at all: it still shows the mail that waited,
    // then logs out.
    const read = await run([], "B");
    assert.equal(read.code, 0, read.out);
    assert.match(read.out, /\[mail\] A \(written [^)]*\): hello by pipe/);
    assert.match(read.out, /\[mail\] A \(written [^)]*\): and again/);
    assert.match(read.out, /2 mail messages arrived while you were away/);

    const bad = await run(["!msg nobody hello"]);
    assert.equal(bad.code, 3, bad.out);
    assert.match(bad.out, /no-mailbox|no mailbox/i);
  });
});
