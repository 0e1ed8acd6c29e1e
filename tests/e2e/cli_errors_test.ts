/**
 * Small mismatches of the command line (issue 11 item 10): `im --frob` is
 * an unknown flag, not an unknown command; with `--json`, the error that
 * ends `im chat` is also an `error` event on stdout, besides the one line
 * (and hint) on stderr.
 * @module
 */

import assert from "node:assert/strict";
import { runIm, sharedKeys } from "./harness.ts";

const keys = await sharedKeys();

Deno.test("im --frob says Unknown flag, with a hint, exit 2", async () => {
  const r = await runIm(["--frob"]);
  assert.equal(r.code, 2);
  assert.deepEqual(r.stderr, [
    'im: error: Unknown flag "--frob"',
    'im: hint: run "im --help"; before a command im takes only --help and --version',
  ]);
  assert.deepEqual(r.stdout, []);
});

Deno.test("im frob still says Unknown command, exit 2", async () => {
  const r = await runIm(["frob"]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr[0], 'im: error: Unknown command "frob"');
});

/** A port on 127.0.0.1 that nobody listens on (just closed). */
function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

Deno.test("im chat --json: a refused connection is a JSON error event on stdout and one line on stderr, exit 1", async () => {
  const r = await runIm([
    "chat",
    "--user",
    "A",
    "--keys",
    keys,
    "--server",
    `127.0.0.1:${closedPort()}`,
    "--json",
  ]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout.length, 1, r.stdout.join("\n"));
  const ev = JSON.parse(r.stdout[0]!);
  assert.deepEqual(Object.keys(ev), ["type", "code", "text", "time"]);
  assert.equal(ev.type, "error");
  assert.equal(ev.code, "connect-failed");
  assert.match(ev.text, /Cannot connect to 127\.0\.0\.1:\d+/);
  assert.equal(r.stderr[0], `im: error: ${ev.text}`);
});

Deno.test("im chat --json: a missing key is a JSON error event too; without --json stdout stays empty", async () => {
  const args = [
    "chat",
    "--user",
    "G",
    "--keys",
    keys,
    "--server",
    "127.0.0.1:1",
  ];
  const withJson = await runIm([...args, "--json"]);
  assert.equal(withJson.code, 1);
  const ev = JSON.parse(withJson.stdout[0]!);
  assert.equal(ev.type, "error");
  assert.equal(ev.code, "key-missing");
  const plain = await runIm(args);
  assert.equal(plain.code, 1);
  assert.deepEqual(plain.stdout, []);
  assert.match(plain.stderr[0] ?? "", /^im: error: /);
});

Deno.test("im chat --json: a bad flag value is a JSON error event too, exit 2", async () => {
  const r = await runIm(["chat", "--user", "A", "--server", "nope", "--json"]);
  assert.equal(r.code, 2);
  assert.equal(JSON.parse(r.stdout[0]!).code, "bad-flag");
});
