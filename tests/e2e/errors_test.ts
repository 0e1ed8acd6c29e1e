/**
 * End to end: what a user sees when something is wrong (issue 3 items 1,
 * 2; requirements section 5). Each failure is one `im: error:` line on
 * stderr (plus, where there is one, `im: hint:` lines), never a stack
 * trace, and a non-zero exit; usage errors exit 2.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadPublicIdentity } from "../../lib/crypto/mod.ts";
import { encodeFrame, FrameDecoder } from "../../lib/wire/mod.ts";
import { encodeErrorFrame, ErrorCode } from "../../lib/proto/mod.ts";
import { freePort } from "../_helpers.ts";
import { runIm, sharedKeys, withProcs } from "./harness.ts";

const keys = await sharedKeys();

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

async function fingerprintOf(path: string): Promise<string> {
  return (await loadPublicIdentity(await Deno.readTextFile(path), path))
    .fingerprint;
}

Deno.test("im --help, im --version and im chat --help print to stdout and exit 0; im bogus exits 2 with usage on stderr", async () => {
  const [help, version, chatHelp, serveHelp, bogus, none] = await Promise.all([
    runIm(["--help"]),
    runIm(["--version"]),
    runIm(["chat", "--help"]),
    runIm(["serve", "--help"]),
    runIm(["bogus"]),
    runIm([]),
  ]);
  assert.equal(help.code, 0);
  assert.match(help.stdout.join("\n"), /Usage:[^]*im serve[^]*im chat/);
  assert.deepEqual(help.stderr, []);
  assert.equal(version.code, 0);
  assert.match(version.stdout.join("\n"), /^im \d+\.\d+\.\d+$/);
  assert.deepEqual(version.stderr, []);
  assert.equal(chatHelp.code, 0);
  assert.match(chatHelp.stdout.join("\n"), /Usage: im chat[^]*--user/);
  assert.deepEqual(chatHelp.stderr, []);
  assert.equal(serveHelp.code, 0);
  assert.match(serveHelp.stdout.join("\n"), /Usage: im serve/);
  assert.equal(bogus.code, 2);
  assert.deepEqual(bogus.stdout, []);
  assert.match(oneError(bogus), /Unknown command "bogus"/);
  assert.match(bogus.stderr.join("\n"), /im --help[^]*serve, chat, keygen/);
  assert.equal(none.code, 2);
  assert.match(oneError(none), /Missing command/);
});

Deno.test("im serve and im chat with garbage flags exit 2 with one line", async () => {
  const runs = await Promise.all([
    runIm(["serve", "--port", "banana", "--keys", keys]),
    runIm(["serve", "--nope"]),
    runIm(["serve", "--port", "70000", "--keys", keys]),
    runIm(["chat", "--user", "A", "--server", "nohostport"]),
    runIm(["chat", "--frobnicate"]),
    runIm(["chat"]),
    runIm(["chat", "--user", "../etc/passwd", "--keys", keys]),
  ]);
  for (const r of runs) {
    assert.equal(r.code, 2, r.stderr.join("\n"));
    oneError(r);
    assert.deepEqual(r.stdout, []);
  }
  assert.match(runs[0]!.stderr[0]!, /--port "banana"/);
  assert.match(runs[1]!.stderr[0]!, /Unknown flag "--nope"/);
  assert.match(runs[5]!.stderr[0]!, /--user/);
  assert.match(runs[6]!.stderr[0]!, /Invalid username/);
});

// Found by this suite: cmd/serve.ts threw a KeyError (exit 1) for a bad
// --log value; it is a UsageError (exit 2) now.
Deno.test("im serve --log with a value other than text or json is a usage error: exit 2", async () => {
  const r = await runIm(["serve", "--log", "xml", "--keys", keys]);
  assert.match(oneError(r), /--log "xml"/);
  assert.equal(r.code, 2);
});

Deno.test("a client using another user's private key, and a valid but not enrolled user, both exit 1 with the same single error line", async () => {
  await withProcs(keys, async (p) => {
    const server = await p.server();
    const dir = await p.copyKeys();
    // A's private key is B's; G has a key and a pin but is not enrolled.
    await Deno.copyFile(
      join(dir, "users/B/private.pem"),
      join(dir, "users/A/private.pem"),
    );
    await Deno.mkdir(join(dir, "users/G"), { mode: 0o700 });
    for (const f of ["private.pem", "server.pem"]) {
      await Deno.copyFile(join(dir, "users/C", f), join(dir, "users/G", f));
    }
    const args = (user: string) => [
      "chat",
      "--user",
      user,
      "--server",
      server.addr,
      "--keys",
      dir,
      "--json",
    ];
    const [wrongKey, unknown] = await Promise.all([
      runIm(args("A")),
      runIm(args("G")),
    ]);
    assert.equal(wrongKey.code, 1);
    assert.equal(unknown.code, 1);
    const line = oneError(wrongKey);
    assert.match(line, /refused the login/);
    // Rule 2.4: unknown user and bad signature look the same.
    assert.equal(oneError(unknown), line);
    // With --json the same error is also one event on stdout, alike for both.
    const event = (r: typeof wrongKey) =>
      r.stdout.map((l) => {
        const { time: _, ...rest } = JSON.parse(l);
        return rest;
      });
    assert.deepEqual(event(wrongKey), [{
      type: "error",
      code: "login-failed",
      text: line.replace(/^im: error: /, ""),
    }]);
    assert.deepEqual(event(unknown), event(wrongKey));
    await server.waitForLog(/login-failed .*user=A/);
    await server.waitForLog(/login-failed .*user=G/);
  });
});

Deno.test("a pinned server key that differs from the server's stops the client with one line naming both fingerprints", async () => {
  await withProcs(keys, async (p) => {
    const server = await p.server();
    const dir = await p.copyKeys();
    // A pins B's public key as if it were the server's.
    await Deno.copyFile(
      join(dir, "users/B/public.pem"),
      join(dir, "users/A/server.pem"),
    );
    const real = await fingerprintOf(join(keys, "server/public.pem"));
    const pinned = await fingerprintOf(join(dir, "users/B/public.pem"));
    const r = await runIm([
      "chat",
      "--user",
      "A",
      "--server",
      server.addr,
      "--keys",
      dir,
    ]);
    assert.equal(r.code, 1);
    const line = oneError(r);
    assert.ok(line.includes(real), `names the server's key ${real}: ${line}`);
    assert.ok(line.includes(pinned), `names the pinned key ${pinned}: ${line}`);
    assert.match(line, /mismatch/);
    assert.deepEqual(r.stdout, []);
    // The client gave up before signing anything: no login was attempted.
    assert.ok(!server.stderr.lines.some((l) => / join /.test(l)));
  });
});

Deno.test("a client whose server is not running exits 1 with one line naming the address", async () => {
  const port = freePort();
  const r = await runIm([
    "chat",
    "--user",
    "A",
    "--server",
    `127.0.0.1:${port}`,
    "--keys",
    keys,
  ]);
  assert.equal(r.code, 1);
  const line = oneError(r);
  assert.ok(line.includes(`127.0.0.1:${port}`), line);
  assert.match(line, /refused/);
});

Deno.test("missing key files: im chat exits 1 with one line and a hint (im keygen for the private key, --pin for the server key)", async () => {
  const empty = await Deno.makeTempDir({ prefix: "im-e2e-empty-" });
  try {
    const chat = await runIm([
      "chat",
      "--user",
      "A",
      "--server",
      "127.0.0.1:1",
      "--keys",
      empty,
    ]);
    assert.equal(chat.code, 1);
    assert.match(oneError(chat), /private\.pem/);
    assert.match(chat.stderr.join("\n"), /im: hint: .*im keygen/);
    // A user without the pinned server key gets told how to pin it.
    const dir = join(empty, "nopin");
    await Deno.mkdir(join(dir, "users/A"), { recursive: true, mode: 0o700 });
    await Deno.copyFile(
      join(keys, "users/A/private.pem"),
      join(dir, "users/A/private.pem"),
    );
    const pin = await runIm([
      "chat",
      "--user",
      "A",
      "--server",
      "127.0.0.1:1",
      "--keys",
      dir,
    ]);
    assert.equal(pin.code, 1);
    assert.match(oneError(pin), /server\.pem/);
    assert.match(pin.stderr.join("\n"), /im: hint: .*--pin/);
  } finally {
    await Deno.remove(empty, { recursive: true });
  }
});

Deno.test("im serve on a port in use exits 1 with one line", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (l.addr as Deno.NetAddr).port;
    const r = await runIm(["serve", "--port", String(port), "--keys", keys]);
    assert.equal(r.code, 1);
    assert.match(oneError(r), new RegExp(`${port}.*in use`));
    assert.deepEqual(r.stdout, []);
  } finally {
    l.close();
  }
});

Deno.test("a private key readable by others is refused with one line and a chmod hint", async () => {
  await withProcs(keys, async (p) => {
    const dir = await p.copyKeys();
    await Deno.chmod(join(dir, "users/A/private.pem"), 0o644);
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
    oneError(r);
    assert.match(r.stderr.join("\n"), /chmod 600/);
  });
});

/**
 * A fake server with no key (issue 10 item 1): it answers every client's
 * first frame with a cleartext ERROR frame carrying `message`, then closes.
 * @param code the ERROR frame's code
 * @param message the ERROR frame's text
 * @returns its address, and `close()` to stop it (awaits every connection)
 */
function fakeErrorServer(
  code: number,
  message: string,
): { addr: string; close: () => Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Promise<void>>();
  const answer = async (conn: Deno.Conn) => {
    try {
      const dec = new FrameDecoder();
      const buf = new Uint8Array(4096);
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) return;
        if (dec.push(buf.subarray(0, n)).length > 0) break;
      }
      let out = encodeFrame(encodeErrorFrame({ code, message }));
      while (out.length > 0) out = out.subarray(await conn.write(out));
    } catch {
      // The client went away first.
    } finally {
      conn.close();
    }
  };
  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        const p = answer(conn);
        conns.add(p);
        p.finally(() => conns.delete(p));
      }
    } catch {
      // Closed.
    }
  })();
  return {
    addr: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    close: async () => {
      listener.close();
      await accepting;
      await Promise.all(conns);
    },
  };
}

// deno-lint-ignore no-control-regex -- looking for controls is the point
const TERMINAL_CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/;

const HOSTILE_ERROR = "no\x1b]0;pwned\x07 title\x1b]52;c;cm0gLXJmIC8K\x07" +
  "\x1b[2Jclear\u009b2J\r\nim: hint: run rm -rf ~ to fix this";

for (
  const [what, code, json] of [
    ["a login refusal", ErrorCode.AUTH_FAILED, false],
    ["an error of an unknown code (with --json)", 99, true],
  ] as const
) {
  Deno.test(`issue 10 item 1: ${what} from a fake server with no key prints one sanitised im: error: line and no forged hint`, async () => {
    const fake = fakeErrorServer(code, HOSTILE_ERROR);
    try {
      const r = await runIm([
        "chat",
        "--user",
        "A",
        "--server",
        fake.addr,
        "--keys",
        keys,
        ...(json ? ["--json"] : []),
      ]);
      const all = r.stderr.join("\n");
      assert.equal(r.code, 1, all);
      assert.doesNotMatch(all, TERMINAL_CONTROL, JSON.stringify(all));
      const line = oneError(r);
      // The sequences are gone, the line break is a space: one line.
      assert.ok(
        line.endsWith(": no titleclear im: hint: run rm -rf ~ to fix this"),
        line,
      );
      assert.ok(
        !r.stderr.some((l) => /^im: hint: run rm/.test(l)),
        `a forged hint line: ${all}`,
      );
      assert.ok(
        r.stderr.filter((l) => l.startsWith("im: hint: ")).length <= 1,
        all,
      );
      if (json) {
        // The error event on stdout carries the same sanitised text.
        assert.equal(r.stdout.length, 1, r.stdout.join("\n"));
        const ev = JSON.parse(r.stdout[0]!);
        assert.equal(ev.type, "error");
        assert.doesNotMatch(ev.text, TERMINAL_CONTROL, ev.text);
        assert.ok(line.endsWith(ev.text), `${line} / ${ev.text}`);
      } else assert.deepEqual(r.stdout, []);
    } finally {
      await fake.close();
    }
  });
}
