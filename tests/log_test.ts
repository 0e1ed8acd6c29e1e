import assert from "node:assert/strict";
import { createLogger, formatLogLine } from "../lib/util/mod.ts";

const AT = new Date("2026-01-02T03:04:05.678Z");

Deno.test("formatLogLine() writes time, event and key=value fields, quoting values with spaces", () => {
  assert.equal(
    formatLogLine(
      "login-failed",
      { user: "A", reason: "unknown user", n: 2 },
      false,
      AT,
    ),
    '2026-01-02T03:04:05.678Z login-failed user=A reason="unknown user" n=2',
  );
});

Deno.test("formatLogLine() as JSON puts time and event first and leaves out undefined fields", () => {
  const line = formatLogLine(
    "join",
    { user: "B", addr: undefined, ok: true },
    true,
    AT,
  );
  assert.deepEqual(JSON.parse(line), {
    time: "2026-01-02T03:04:05.678Z",
    event: "join",
    user: "B",
    ok: true,
  });
  assert.ok(!line.includes("addr"));
});

Deno.test("formatLogLine() cannot be split into two lines by a hostile value", () => {
  const line = formatLogLine(
    "x",
    { user: "A\nforged 2026 join user=Z" },
    false,
    AT,
  );
  assert.equal(line.split("\n").length, 1);
});

Deno.test("createLogger() hands each line to its writer", () => {
  const lines: string[] = [];
  const log = createLogger(true, (l) => lines.push(l));
  log("start", { port: 1 });
  log("stop");
  assert.equal(lines.length, 2);
  assert.equal(JSON.parse(lines[1]!).event, "stop");
});

Deno.test("formatLogLine() escapes terminal control sequences from a hostile value, as text and as JSON", () => {
  const evil = "A\x1b]0;pwned\x07\x1b[2J\x9b31m";
  for (const json of [false, true]) {
    const line = formatLogLine("x", { user: evil }, json, AT);
    // deno-lint-ignore no-control-regex
    assert.ok(!/[\x00-\x1f\x7f-\x9f]/.test(line), JSON.stringify(line));
    assert.match(line, /\\u001b/);
    assert.match(line, /\\u009b/);
  }
});

Deno.test("log values with bidi or invisible characters are escaped, in text and JSON: they cannot reorder or hide what the operator reads", () => {
  const evil = "a\u202eb\u2066c\u200bd\ufeffe\u00adf\u061cg";
  for (const json of [false, true]) {
    const line = formatLogLine(
      "login-error",
      { detail: evil },
      json,
      new Date(0),
    );
    assert.doesNotMatch(
      line,
      /[\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/,
      json ? "json" : "text",
    );
    assert.match(line, /\\u202e/);
  }
});
