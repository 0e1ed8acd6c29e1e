/**
 * The cluster key (PROTOCOL.md 11.1, lib/keystore/cluster_key.ts): made by
 * `im keygen` with the server's keys as 32 random bytes in base64 on one
 * line, 0600 in the 0700 server folder, kept when present; loaded with the
 * checks of a private key, each failure one line with a fix.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { KeyError } from "../lib/util/mod.ts";
import {
  CLUSTER_KEY_PATH,
  clusterKeyId,
  ensureClusterKey,
  KeyStoreError,
  loadClusterKey,
} from "../lib/keystore/mod.ts";
import { runKeygen } from "../cmd/keygen.ts";
import { cliHint } from "../cmd/hints.ts";

const posix = Deno.build.os !== "windows";

async function withTemp(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "im-cluster-key-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function fails(dir: string, code: string): Promise<KeyStoreError> {
  const e = await loadClusterKey(dir).then(() => undefined, (e) => e);
  assert.ok(e instanceof KeyStoreError, `expected ${code}, got ${e}`);
  assert.ok(e instanceof KeyError);
  assert.equal(e.code, code, e.message);
  assert.ok(!e.message.includes("\n"), "one line");
  return e;
}

Deno.test("cluster key: made once (32 bytes, base64 on one line, 0600 in a 0700 server folder), then kept", async () => {
  await withTemp(async (dir) => {
    assert.equal(CLUSTER_KEY_PATH, "server/cluster.key");
    const made = await ensureClusterKey(dir);
    assert.equal(made.action, "created");
    assert.equal(made.path, "server/cluster.key");
    assert.match(made.fingerprint, /^SHA256:[A-Za-z0-9+/]{43}$/);
    const path = join(dir, "server", "cluster.key");
    const text = await Deno.readTextFile(path);
    assert.match(text, /^[A-Za-z0-9+/]{43}=\n$/);
    const key = await loadClusterKey(dir);
    assert.equal(key.length, 32);
    assert.equal(key.toBase64(), text.trim());
    assert.equal(clusterKeyId(key), made.fingerprint);
    if (posix) {
      assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
      assert.equal(
        (await Deno.stat(join(dir, "server"))).mode! & 0o777,
        0o700,
      );
    }
    const again = await ensureClusterKey(dir);
    assert.deepEqual(again, { ...made, action: "kept" });
    assert.equal(await Deno.readTextFile(path), text, "byte-identical");
  });
});

Deno.test("cluster key: two directories get different keys", async () => {
  await withTemp(async (a) => {
    await withTemp(async (b) => {
      await ensureClusterKey(a);
      await ensureClusterKey(b);
      assert.notEqual(
        (await loadClusterKey(a)).toHex(),
        (await loadClusterKey(b)).toHex(),
      );
    });
  });
});

Deno.test("cluster key: missing is key-missing whose fix is im keygen; too open, malformed, wrong length each refused", async () => {
  await withTemp(async (dir) => {
    const missing = await fails(dir, "key-missing");
    assert.match(missing.message, /cluster key ".*cluster\.key"/);
    assert.deepEqual(missing.fix, { kind: "provision-server", dir });
    assert.equal(cliHint(missing), `run "im keygen --dir ${dir}" first`);

    await ensureClusterKey(dir);
    const path = join(dir, "server", "cluster.key");
    if (posix) {
      await Deno.chmod(path, 0o644);
      const open = await fails(dir, "key-permissions");
      assert.match(open.message, /mode 0644/);
      await Deno.chmod(path, 0o600);
      await Deno.chmod(join(dir, "server"), 0o770);
      await fails(dir, "key-dir-writable");
      await Deno.chmod(join(dir, "server"), 0o700);
    }
    for (
      const bad of [
        "not base64!\n",
        `${new Uint8Array(31).toBase64()}\n`,
        `${new Uint8Array(33).toBase64()}\n`,
        `${new Uint8Array(32).toBase64()}\n${new Uint8Array(32).toBase64()}\n`,
        "",
      ]
    ) {
      await Deno.writeTextFile(path, bad, { mode: 0o600 });
      const e = await fails(dir, "bad-cluster-key");
      assert.match(e.message, /32 bytes as base64 on one line/);
      // ensureClusterKey never writes over a key it cannot read.
      await assert.rejects(ensureClusterKey(dir), KeyStoreError);
      assert.equal(await Deno.readTextFile(path), bad);
    }
  });
});

Deno.test("im keygen makes the cluster key with the server's keys and prints it; --force-server keeps it", async () => {
  await withTemp(async (dir) => {
    const out: string[] = [];
    const io = { out: (l: string) => out.push(l), err: () => {} };
    assert.equal(
      await runKeygen(["--dir", dir, "--bits", "2048", "--users", ""], io),
      0,
    );
    assert.match(out[1]!, /^created {2}server\/cluster\.key {2}SHA256:\S{43}$/);
    const key = (await loadClusterKey(dir)).toHex();
    out.length = 0;
    await runKeygen(
      ["--dir", dir, "--bits", "2048", "--users", "", "--force-server"],
      io,
    );
    assert.ok(
      out.some((l) => /^kept +server\/cluster\.key /.test(l)),
      out.join("\n"),
    );
    assert.equal((await loadClusterKey(dir)).toHex(), key);
  });
});
