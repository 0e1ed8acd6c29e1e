import assert from "node:assert/strict";
import { UsageError } from "../lib/util/mod.ts";
import { hostPort, intFlag, parseFlags } from "../cmd/flags.ts";

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
