import assert from "node:assert/strict";
import { join } from "node:path";
import { SqliteStore, type Store } from "../../lib/server/mod.ts";
import { storeContract } from "./store_contract.ts";
import { crashRecord } from "./_store_crash_child.ts";

/** A fresh temp directory for `fn`, removed afterwards. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "im_sqlite_store_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A store on a fresh temp file whose close() also removes the file's directory. */
async function tempStore(clock: () => number): Promise<Store> {
  const dir = await Deno.makeTempDir({ prefix: "im_sqlite_store_" });
  const s = await SqliteStore.open(join(dir, "data", "mail.db"), clock);
  let removed = false;
  return {
    append: (u, d, o) => s.append(u, d, o),
    appendMany: (e) => s.appendMany(e),
    read: (u, o) => s.read(u, o),
    ack: (u, q) => s.ack(u, q),
    expire: (b, o) => s.expire(b, o),
    usage: (u) => s.usage(u),
    close: async () => {
      await s.close();
      if (!removed) {
        removed = true;
        await Deno.remove(dir, { recursive: true });
      }
    },
  };
}

storeContract("SqliteStore", tempStore);

const bytes = (...v: number[]) => new Uint8Array(v);

Deno.test("SqliteStore keeps records and seqs across close and reopen: a seq is never reused, even after everything was acknowledged", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "mail.db");
    let s = await SqliteStore.open(path, () => 7);
    const a1 = await s.append("A", bytes(1));
    const a2 = await s.append("A", bytes(2));
    const b1 = await s.append("B", bytes(3));
    assert.equal(await s.ack("A", a2), 2);
    await s.close();

    s = await SqliteStore.open(path, () => 8);
    try {
      assert.deepEqual(await s.read("A"), []);
      const recs = await s.read("B");
      assert.deepEqual(
        recs.map((r) => [r.seq, r.user, r.at, [...r.data]]),
        [[b1, "B", 7, [3]]],
      );
      const a3 = await s.append("A", bytes(4));
      assert.ok(a3 > a2 && a2 > a1, `seq ${a3} follows ${a2}`);
      const b2 = await s.append("B", bytes(5));
      assert.ok(b2 > b1);
      assert.deepEqual((await s.read("B")).map((r) => r.data[0]), [3, 5]);
    } finally {
      await s.close();
    }
  });
});

Deno.test("SqliteStore creates its directory 0700 and its database, WAL and shared-memory files 0600", async () => {
  await inTempDir(async (dir) => {
    const data = join(dir, "data");
    const path = join(data, "mail.db");
    const s = await SqliteStore.open(path);
    try {
      await s.append("A", bytes(1));
      const mode = async (p: string) => (await Deno.stat(p)).mode! & 0o777;
      assert.equal((await mode(data)).toString(8), "700");
      for (const p of [path, `${path}-wal`, `${path}-shm`]) {
        assert.equal((await mode(p)).toString(8), "600", p);
      }
    } finally {
      await s.close();
    }
  });
});

Deno.test("SqliteStore leaves its file in WAL mode, seen by another connection", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "mail.db");
    const s = await SqliteStore.open(path);
    await s.close();
    const { DatabaseSync } = await import("node:sqlite");
    const db = new DatabaseSync(path);
    try {
      // journal_mode=WAL is kept in the file; synchronous is per connection.
      assert.equal(
        db.prepare("PRAGMA journal_mode").get()?.journal_mode,
        "wal",
      );
    } finally {
      db.close();
    }
  });
});

Deno.test("SqliteStore refuses every call after close() with an error that names the store", async () => {
  await inTempDir(async (dir) => {
    const s = await SqliteStore.open(join(dir, "mail.db"));
    await s.append("A", bytes(1));
    await s.close();
    await assert.rejects(s.append("A", bytes(2)), /closed/);
    await assert.rejects(s.read("A"), /closed/);
    await assert.rejects(s.ack("A", 1), /closed/);
    await assert.rejects(s.expire(0), /closed/);
    await s.close();
  });
});

Deno.test("SqliteStore.open() refuses a file that is not a SQLite database and leaves it as it was", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "mail.db");
    const junk = new TextEncoder().encode("not a database at all, ".repeat(50));
    await Deno.writeFile(path, junk);
    await assert.rejects(SqliteStore.open(path));
    assert.deepEqual(await Deno.readFile(path), junk);
  });
});

Deno.test("SqliteStore.append() refuses data that is not a Uint8Array and stores nothing", async () => {
  await inTempDir(async (dir) => {
    const s = await SqliteStore.open(join(dir, "mail.db"));
    try {
      await assert.rejects(
        s.append("A", "text" as unknown as Uint8Array),
        TypeError,
      );
      assert.deepEqual(await s.read("A"), []);
      assert.equal(await s.append("A", bytes(1)), 1, "no seq was used up");
    } finally {
      await s.close();
    }
  });
});

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (hay[i + j] !== needle[j]) continue outer;
    }
    return i;
  }
  return -1;
}

Deno.test("the database file holds the bytes it was given, as they were, and none it was not: grepping it is meaningful", async () => {
  await inTempDir(async (dir) => {
    const path = join(dir, "mail.db");
    const given = crypto.getRandomValues(new Uint8Array(32));
    const never = crypto.getRandomValues(new Uint8Array(32));
    const s = await SqliteStore.open(path);
    await s.append("A", given);
    await s.close();
    // After the last connection closes, SQLite checkpoints the WAL into the file.
    const raw = await Deno.readFile(path);
    assert.ok(indexOf(raw, given) >= 0, "the given bytes are in the file");
    assert.equal(indexOf(raw, never), -1, "bytes never given are not");
  });
});

/**
 * Run the crash child on `path` until it has reported at least `atLeast`
 * appends, then SIGKILL it (mid-append, most likely) and read what it had
 * written before it died.
 * @returns the [seq, record number] pairs it reported as stored
 */
async function crashChild(
  path: string,
  atLeast: number,
): Promise<Array<[number, number]>> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("./_store_crash_child.ts", import.meta.url).pathname,
      path,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reported: Array<[number, number]> = [];
  let killed = false;
  let rest = "";
  try {
    for await (
      const chunk of child.stdout.pipeThrough(new TextDecoderStream())
    ) {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop()!;
      for (const line of lines) {
        const [seq, i] = line.split(" ").map(Number);
        reported.push([seq!, i!]);
      }
      if (!killed && reported.length >= atLeast) {
        child.kill("SIGKILL");
        killed = true;
      }
    }
  } finally {
    if (!killed) child.kill("SIGKILL");
    const status = await child.status;
    assert.equal(status.signal, "SIGKILL", "the child ran until killed");
  }
  return reported;
}

Deno.test({
  name:
    "SqliteStore loses no acknowledged append when its process is killed with SIGKILL mid-way, three times over, and its seqs only increase",
  fn: async () => {
    await inTempDir(async (dir) => {
      const path = join(dir, "data", "mail.db");
      const reported: Array<[number, number]> = [];
      for (const atLeast of [40, 150, 75]) {
        const round = await crashChild(path, atLeast);
        assert.ok(
          round.length >= atLeast,
          `the child reported ${round.length}`,
        );
        reported.push(...round);
      }
      // Seqs reported across the runs strictly increase: no reuse after a crash.
      for (let k = 1; k < reported.length; k++) {
        assert.ok(reported[k]![0] > reported[k - 1]![0], `at ${k}`);
      }
      const s = await SqliteStore.open(path);
      try {
        const recs = await s.read("A");
        const bySeq = new Map(recs.map((r) => [r.seq, r.data]));
        for (const [seq, i] of reported) {
          assert.deepEqual(bySeq.get(seq), crashRecord(i), `seq ${seq} kept`);
        }
        // At most one append per run was committed but not yet reported.
        assert.ok(recs.length - reported.length <= 3);
        for (let k = 1; k < recs.length; k++) {
          assert.ok(recs[k]!.seq > recs[k - 1]!.seq);
        }
        const next = await s.append("A", bytes(1));
        assert.ok(next > recs.at(-1)!.seq);
      } finally {
        await s.close();
      }
    });
  },
});
