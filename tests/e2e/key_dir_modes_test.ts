/**
 * End to end: key directories that group or others can write (issue 10
 * item 9). `im serve` and `im chat` refuse them with one line and a
 * `chmod 700` hint; a running server that finds its client directory made
 * writable refuses the reload, logs it, and keeps the keys it had.
 * (Tests run as root, which ignores permissions on access; the mode bits
 * are still what the keystore reads with `Deno.stat`.)
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { sleep } from "../../lib/util/mod.ts";
import { runIm, sharedKeys, withProcs } from "./harness.ts";
import { errorCode } from "./_chat.ts";

const keys = await sharedKeys();
const posix = Deno.build.os !== "windows";

/** The one error line; every other line must be a hint; no stack trace. */
function oneError(r: { code: number; stderr: string[] }): string {
  const errors = r.stderr.filter((l) => l.startsWith("im: error: "));
  assert.equal(errors.length, 1, `one error line in ${r.stderr.join("\n")}`);
  for (const l of r.stderr) {
    assert.match(l, /^im: (error|hint): /, `unexpected stderr line: ${l}`);
  }
  assert.equal(r.stderr[0], errors[0], "the error comes first");
  return errors[0]!;
}

/** Poll `cond` every 20 ms until it holds, or fail after `timeoutMs`. */
async function until(
  cond: () => boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

Deno.test({
  name:
    "im serve with server/clients/ at 0777 exits 1 with one line naming the path and mode, and a chmod 700 hint",
  ignore: !posix,
  async fn() {
    await withProcs(keys, async (p) => {
      for (const rel of ["server/clients", "server", ""]) {
        const dir = await p.copyKeys();
        const path = rel ? join(dir, rel) : dir;
        await Deno.chmod(path, 0o777);
        // A server that starts anyway would run until killed: bounded.
        const r = await runIm(["serve", "--port", "0", "--keys", dir], 30_000);
        assert.equal(r.code, 1, `${rel}: ${r.stderr.join("\n")}`);
        assert.equal(
          oneError(r),
          `im: error: Refusing to use key directory "${path}": mode 0777 lets group or others write to it`,
        );
        assert.match(
          r.stderr[1] ?? "",
          new RegExp(`^im: hint: run "chmod 700 ${path}"`),
        );
        assert.deepEqual(r.stdout, []);
      }
    });
  },
});

Deno.test({
  name:
    "im chat with users/A/ at 0777 exits 1 with one line and a chmod 700 hint",
  ignore: !posix,
  async fn() {
    await withProcs(keys, async (p) => {
      const dir = await p.copyKeys();
      const path = join(dir, "users/A");
      await Deno.chmod(path, 0o777);
      const r = await runIm([
        "chat",
        "--user",
        "A",
        "--server",
        "127.0.0.1:1",
        "--keys",
        dir,
      ]);
      assert.equal(r.code, 1);
      assert.match(oneError(r), /users\/A": mode 0777 lets group or others/);
      assert.match(r.stderr.join("\n"), /im: hint: run "chmod 700 /);
    });
  },
});

Deno.test({
  name:
    "a reload after server/clients/ was made 0777 while running is refused and logged: the current keys stay, a key planted there enrolls nobody",
  ignore: !posix,
  async fn() {
    await withProcs(keys, async (p) => {
      const dir = await p.copyKeys();
      const server = await p.server({ keys: dir });
      const [a, c] = await p.chats(server, ["A", "C"], { keys: dir });
      const failures = () =>
        server.stderr.lines.filter((l) =>
          / reload-failed .*mode 0777 lets group or others write/.test(l)
        ).length;

      // Anyone may now write the client directory: G plants a key (a copy
      // of A's, for which G holds the private key), and C's is removed.
      const clients = join(dir, "server/clients");
      await Deno.chmod(clients, 0o777);
      await Deno.mkdir(join(dir, "users/G"), { mode: 0o700 });
      for (const f of ["private.pem", "public.pem", "server.pem"]) {
        await Deno.copyFile(join(dir, "users/A", f), join(dir, "users/G", f));
      }
      await Deno.copyFile(join(clients, "A.pem"), join(clients, "G.pem"));
      await Deno.remove(join(clients, "C.pem"));
      // The watcher notices the change; SIGHUP asks again. Both are refused.
      await until(() => failures() >= 1, "the watcher's reload to fail");
      const n = failures();
      server.signal("SIGHUP");
      await until(() => failures() > n, "the SIGHUP reload to fail");
      assert.ok(
        !server.stderr.lines.some((l) => / reload users=/.test(l)),
        "no reload took effect",
      );

      const g = await runIm([
        "chat",
        "--user",
        "G",
        "--server",
        server.addr,
        "--keys",
        dir,
      ]);
      assert.equal(g.code, 1, "the planted key enrolled nobody");
      assert.match(g.stderr[0] ?? "", /^im: error: .*refused the login/);
      // Nobody was revoked: C, whose key was removed, is still online.
      assert.deepEqual(await a!.list(), { A: "IDLE", C: "IDLE" });
      assert.ok(!c!.events.some(errorCode("revoked")));
      assert.equal(c!.exited, null);
    });
  },
});
