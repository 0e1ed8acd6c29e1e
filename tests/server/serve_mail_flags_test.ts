/**
 * `im serve`'s mailbox and room flags (PROTOCOL.md 9.8, 9.9, 10.4): each
 * bad value is one usage line (exit 2) before anything starts, and a data
 * directory that cannot hold the database is one error line with a hint
 * (exit 1), before the server listens.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { main } from "../../main.ts";
import { defaultDataDir } from "../../cmd/serve.ts";

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

/** A key directory with a server key and no users, removed afterwards. */
async function withKeys(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "im-serve-mail-" });
  try {
    const keygen = await runMain([
      "keygen",
      "--dir",
      join(dir, "keys"),
      "--users",
      "",
      "--bits",
      "2048",
    ]);
    assert.equal(keygen.code, 0, keygen.stderr.join("\n"));
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("im serve refuses a bad --mail-rate, --mail-max-count, --mail-max-bytes, --mail-retention or an empty --data with one usage line (exit 2)", async () => {
  await withKeys(async (dir) => {
    const cases: Array<[string, string, string]> = [
      ["--mail-rate", "0", "from 1 to 10000"],
      ["--mail-rate", "fast", "from 1 to 10000"],
      ["--mail-max-count", "0", "from 1 to 100000000"],
      ["--mail-max-bytes", "1000", "from 65536 to 107374182400"],
      ["--mail-retention", "31", "from 1 to 30"],
      ["--mail-retention", "0", "from 1 to 30"],
    ];
    for (const [flag, value, range] of cases) {
      const r = await runMain([
        "serve",
        "--keys",
        join(dir, "keys"),
        "--port",
        "0",
        flag,
        value,
      ]);
      assert.equal(r.code, 2, `${flag} ${value}`);
      assert.deepEqual(r.stderr, [
        `im: error: Invalid ${flag} "${value}": expected a whole number ${range}`,
      ]);
    }
    const empty = await runMain([
      "serve",
      "--keys",
      join(dir, "keys"),
      "--data",
      "",
    ]);
    assert.equal(empty.code, 2);
    assert.equal(
      empty.stderr[0],
      'im: error: Invalid --data "": expected a directory',
    );
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name),
      ["keys"],
      "no data directory was made",
    );
  });
});

Deno.test("im serve refuses a bad --room-max-members or --room-max-rooms with one usage line (exit 2), before anything starts", async () => {
  await withKeys(async (dir) => {
    const cases: Array<[string, string, string]> = [
      ["--room-max-members", "0", "from 1 to 1024"],
      ["--room-max-members", "1025", "from 1 to 1024"],
      ["--room-max-members", "many", "from 1 to 1024"],
      ["--room-max-rooms", "0", "from 1 to 10000"],
      ["--room-max-rooms", "10001", "from 1 to 10000"],
    ];
    for (const [flag, value, range] of cases) {
      const r = await runMain([
        "serve",
        "--keys",
        join(dir, "keys"),
        "--port",
        "0",
        flag,
        value,
      ]);
      assert.equal(r.code, 2, `${flag} ${value}`);
      assert.deepEqual(r.stderr, [
        `im: error: Invalid ${flag} "${value}": expected a whole number ${range}`,
      ]);
    }
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name),
      ["keys"],
      "no data directory was made",
    );
  });
});

Deno.test("im serve --data naming a file is one error line and a hint (exit 1), and it does not listen", async () => {
  await withKeys(async (dir) => {
    const file = join(dir, "not-a-dir");
    await Deno.writeTextFile(file, "x");
    const r = await runMain([
      "serve",
      "--keys",
      join(dir, "keys"),
      "--port",
      "0",
      "--data",
      file,
    ]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.length, 2, r.stderr.join("\n"));
    assert.match(
      r.stderr[0]!,
      /^im: error: Cannot open the mailbox database .*not-a-dir\/mail\.db: /,
    );
    assert.equal(r.stderr[1], "im: hint: choose another directory with --data");
    assert.equal(await Deno.readTextFile(file), "x");
  });
});

Deno.test("without --data the mailboxes go beside the key directory: data/ for keys/, <name>-data for any other name, so two key directories in one folder never share a database", () => {
  assert.equal(defaultDataDir("/srv/im/keys"), "/srv/im/data");
  assert.equal(defaultDataDir("/srv/im/keys/"), "/srv/im/data");
  assert.equal(defaultDataDir("/srv/im/team-a"), "/srv/im/team-a-data");
  assert.notEqual(
    defaultDataDir("/srv/im/team-a"),
    defaultDataDir("/srv/im/team-b"),
  );
  assert.equal(defaultDataDir("keys"), join(Deno.cwd(), "data"));
});
