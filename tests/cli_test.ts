import assert from "node:assert/strict";
import { UsageError } from "../lib/util/mod.ts";
import { KeyStoreError } from "../lib/keystore/mod.ts";
import { hostPort, intFlag, parseFlags } from "../cmd/flags.ts";
import { MAX_SERVERS, serverList } from "../cmd/chat.ts";
import { cliHint, withCliHint } from "../cmd/hints.ts";
import { main } from "../main.ts";

const OPTS = { port: { type: "string" }, json: { type: "boolean" } } as const;
const isUsage = (e: unknown) =>
  e instanceof UsageError && e.code === "bad-flag";

Deno.test("parseFlags() returns the values of known flags", () => {
  assert.deepEqual({ ...parseFlags(["--port", "5", "--json"], OPTS, "im x") }, {
    port: "5",
    json: true,
  });
});

Deno.test("parseFlags() turns an unknown flag, a positional, a missing value and a value on a boolean into UsageError bad-flag", () => {
  for (const args of [["--nope"], ["extra"], ["--port"], ["--json=1"]]) {
    assert.throws(
      () => parseFlags(args, OPTS, "im x"),
      isUsage,
      args.join(" "),
    );
  }
  const e = (() => {
    try {
      parseFlags(["--nope"], OPTS, "im x");
    } catch (e) {
      return e as UsageError;
    }
  })();
  assert.equal(e?.message, 'Unknown flag "--nope"');
  assert.equal(e?.hint, 'run "im x --help"');
});

Deno.test("intFlag() accepts whole numbers in range and the fallback when absent", () => {
  assert.equal(intFlag("--port", "0", 9, 0, 65535), 0);
  assert.equal(intFlag("--port", "65535", 9, 0, 65535), 65535);
  assert.equal(intFlag("--port", undefined, 9, 0, 65535), 9);
});

Deno.test("intFlag() rejects banana, negatives, fractions, out of range and huge values", () => {
  for (
    const v of ["banana", "-1", "1.5", "65536", "", "1e3", "99999999999999999"]
  ) {
    assert.throws(() => intFlag("--port", v, 9, 0, 65535), isUsage, v);
  }
});

Deno.test("hostPort() parses host:port, IPv6 in brackets, and rejects anything else", () => {
  assert.deepEqual(hostPort("--server", "127.0.0.1:9876"), {
    host: "127.0.0.1",
    port: 9876,
  });
  assert.deepEqual(hostPort("--server", "[::1]:80"), { host: "::1", port: 80 });
  assert.deepEqual(hostPort("--server", "example.org:1"), {
    host: "example.org",
    port: 1,
  });
  for (
    const v of ["127.0.0.1", ":80", "host:", "host:99999", "a b:1", "host:port"]
  ) {
    assert.throws(() => hostPort("--server", v), isUsage, v);
  }
});

Deno.test("serverList() takes one host:port as before, or a cluster's nodes separated by commas, in order", () => {
  assert.deepEqual(serverList("127.0.0.1:9876"), [
    { host: "127.0.0.1", port: 9876 },
  ]);
  assert.deepEqual(serverList("a:1,[::1]:2, b.example:3"), [
    { host: "a", port: 1 },
    { host: "::1", port: 2 },
    { host: "b.example", port: 3 },
  ]);
  const most = Array.from({ length: MAX_SERVERS }, (_, i) => `h:${i + 1}`);
  assert.equal(serverList(most.join(",")).length, MAX_SERVERS);
});

Deno.test("serverList() names the bad entry, and refuses a node given twice, an empty entry and more than 16 nodes", () => {
  const cases: Array<[string, string]> = [
    [
      "nope",
      'Invalid --server "nope": expected host:port, e.g. 127.0.0.1:9876',
    ],
    [
      "a:1,nope,b:2",
      'Invalid --server entry "nope": expected host:port, e.g. 127.0.0.1:9876',
    ],
    [
      "a:1,b:99999",
      'Invalid --server entry "b:99999": expected host:port, e.g. 127.0.0.1:9876',
    ],
    [
      "a:1,",
      'Invalid --server entry "": expected host:port, e.g. 127.0.0.1:9876',
    ],
    ["a:1,b:2,a:1", 'Invalid --server: "a:1" is given more than once'],
    ["A:1,a:1", 'Invalid --server: "a:1" is given more than once'],
    [
      Array.from({ length: MAX_SERVERS + 1 }, (_, i) => `h:${i + 1}`).join(","),
      `Invalid --server: ${MAX_SERVERS + 1} servers, at most ${MAX_SERVERS}`,
    ],
  ];
  for (const [v, msg] of cases) {
    const e = usageError(() => serverList(v));
    assert.equal(e.code, "bad-flag", v);
    assert.equal(e.message, msg, v);
  }
});

Deno.test("im chat --server with a bad entry or a node given twice is a usage error (exit 2) naming it", async () => {
  for (
    const [v, msg] of [
      ["127.0.0.1:1,nope", 'Invalid --server entry "nope"'],
      ["127.0.0.1:1,127.0.0.1:1", '"127.0.0.1:1" is given more than once'],
    ] as const
  ) {
    const r = await runMain(["chat", "--user", "A", "--server", v]);
    assert.equal(r.code, 2, v);
    assert.ok(r.stderr[0]?.startsWith("im: error: "), r.stderr.join("\n"));
    assert.ok(r.stderr[0]!.includes(msg), r.stderr.join("\n"));
  }
});

// ---------------------------------------------------------------------------
// Issue 11 item 10: the command line says what is wrong with it

/** The UsageError that `f` throws. */
function usageError(f: () => unknown): UsageError {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof UsageError, String(e));
    return e;
  }
  assert.fail("no UsageError");
}

Deno.test("parseFlags() takes a negative number after a flag as its value, so the flag's range check names it (not 'needs a value')", () => {
  const opts = { "reconnect-base": { type: "string" } } as const;
  for (const v of ["-5", "-1.5", "-0"]) {
    const got = parseFlags(["--reconnect-base", v], opts, "im chat");
    assert.equal(got["reconnect-base"], v);
    const e = usageError(() =>
      intFlag("--reconnect-base", got["reconnect-base"], 1000, 10, 30_000)
    );
    assert.equal(
      e.message,
      `Invalid --reconnect-base "${v}": expected a whole number from 10 to 30000`,
    );
  }
  // Only a number is taken: a missing value is still a missing value.
  assert.equal(
    usageError(() => parseFlags(["--port", "--json"], OPTS, "im x")).message,
    'Flag "--port" needs a value',
  );
  // A boolean flag takes nothing: "-5" after it is an argument too many.
  assert.throws(() => parseFlags(["--json", "-5"], OPTS, "im x"), isUsage);
});

Deno.test("parseFlags() refuses a flag given twice, with a value or without, instead of keeping the last", () => {
  for (
    const args of [
      ["--port", "1", "--port", "2"],
      ["--port", "1", "--port", "1"],
      ["--port=1", "--port", "2"],
      ["--json", "--port", "1", "--json"],
    ]
  ) {
    const e = usageError(() => parseFlags(args, OPTS, "im x"));
    assert.equal(e.code, "bad-flag");
    assert.match(e.message, /^Flag "--(port|json)" is given more than once$/);
    assert.equal(e.hint, 'run "im x --help"');
  }
  const multi = { tag: { type: "string", multiple: true } } as const;
  assert.deepEqual(
    parseFlags(["--tag", "a", "--tag", "b"], multi, "im x").tag,
    [
      "a",
      "b",
    ],
  );
});

/** Run main() with stderr captured. */
async function runMain(
  args: string[],
): Promise<{ code: number; stderr: string[] }> {
  const stderr: string[] = [];
  const orig = console.error;
  console.error = (...a: unknown[]) => stderr.push(a.join(" "));
  try {
    return { code: await main(args), stderr };
  } finally {
    console.error = orig;
  }
}

Deno.test("im chat --user A --user B is a usage error (exit 2), not a login as B", async () => {
  const r = await runMain(["chat", "--user", "A", "--user", "B"]);
  assert.equal(r.code, 2);
  assert.deepEqual(r.stderr, [
    'im: error: Flag "--user" is given more than once',
    'im: hint: run "im chat --help"',
  ]);
});

Deno.test("im chat --reconnect-base -5 says the value is invalid (exit 2)", async () => {
  const r = await runMain(["chat", "--user", "A", "--reconnect-base", "-5"]);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr[0],
    'im: error: Invalid --reconnect-base "-5": expected a whole number from 10 to 30000',
  );
});

Deno.test("im serve --frob and im serve --port 1 --port 2 are usage errors (exit 2) before anything starts", async () => {
  for (
    const [args, msg] of [
      [["serve", "--frob"], 'Unknown flag "--frob"'],
      [
        ["serve", "--port", "1", "--port", "2"],
        'Flag "--port" is given more than once',
      ],
    ] as const
  ) {
    const r = await runMain([...args]);
    assert.equal(r.code, 2, args.join(" "));
    assert.equal(r.stderr[0], `im: error: ${msg}`);
  }
});

Deno.test("a key directory hint names the flag of the subcommand that ran: --keys for serve and chat, --dir for keygen", () => {
  for (const kind of ["other-dir", "writable-dir"] as const) {
    const e = new KeyStoreError("key-write-failed", "Cannot", "k", { kind });
    assert.match(cliHint(e) ?? "", /--keys$/);
    assert.match(cliHint(e, "--keys") ?? "", /--keys$/);
    assert.match(cliHint(e, "--dir") ?? "", /--dir$/);
    // An error that carries keygen's hint keeps it when main.ts asks again.
    const hinted = withCliHint(e, "--dir");
    assert.ok(hinted instanceof KeyStoreError && hinted.code === e.code);
    assert.match(cliHint(hinted) ?? "", /--dir$/);
  }
});

Deno.test({
  name:
    "im serve --keys DIR that cannot be created hints --keys, and im keygen --dir DIR hints --dir",
  ignore: Deno.build.os !== "linux",
  async fn() {
    // Nothing can be created under /proc, whoever runs the test. Deno lets
    // only a program with every permission touch /proc, so im runs as one.
    const dir = "/proc/im-keys-cannot-exist";
    const run = async (args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "main.ts", ...args],
        env: { NO_COLOR: "1" },
        stdout: "null",
        stderr: "piped",
      }).output();
      return {
        code: out.code,
        stderr: new TextDecoder().decode(out.stderr).trimEnd().split("\n"),
      };
    };
    const serve = await run(["serve", "--keys", dir, "--port", "0"]);
    assert.equal(serve.code, 1);
    assert.match(serve.stderr[0] ?? "", /^im: error: Cannot create directory/);
    assert.equal(
      serve.stderr[1],
      "im: hint: choose another directory with --keys",
    );
    const keygen = await run(["keygen", "--dir", dir, "--users", "A"]);
    assert.equal(keygen.code, 1);
    assert.equal(
      keygen.stderr[1],
      "im: hint: choose another directory with --dir",
    );
  },
});

Deno.test("im serve --bits 1 is a usage error (exit 2) even when the server's keys exist", async () => {
  const dir = await Deno.makeTempDir({ prefix: "im-cli-" });
  try {
    assert.equal(
      await runMain(["keygen", "--dir", dir, "--users", "", "--bits", "2048"])
        .then((r) => r.code),
      0,
    );
    const r = await runMain([
      "serve",
      "--keys",
      dir,
      "--port",
      "0",
      "--bits",
      "1",
    ]);
    assert.equal(r.code, 2);
    assert.equal(
      r.stderr[0],
      'im: error: Invalid --bits "1": expected a whole number from 2048 to 4096',
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
