import assert from "node:assert/strict";
import { join } from "node:path";
import { AuthError, KeyError, UsageError } from "../lib/util/mod.ts";
import {
  decryptOaep,
  encryptOaep,
  generateRsaKeyPair,
  loadPublicIdentity,
  pemEncode,
  signPss,
  verifyPss,
} from "../lib/crypto/mod.ts";
import {
  DEFAULT_USERS,
  defaultKeyDir,
  enroll,
  type KeyFix,
  KeyStoreError,
  listUsers,
  loadClientDirectory,
  loadPinnedPeer,
  loadServerKeys,
  loadUserKeys,
  peerPinPath,
  peerPinStore,
  pinPeer,
  pinServerKey,
  provision,
  provisionPublicOnly,
  serverKeysExist,
} from "../lib/keystore/mod.ts";
import { cliHint } from "../cmd/hints.ts";

const BITS = 2048;
const FP = /^SHA256:[A-Za-z0-9+/]{43}$/;
const posix = Deno.build.os !== "windows";

// ---------------------------------------------------------------------------
// Fixtures: one provisioned deployment (server, A, B) copied per test

const template = await Deno.makeTempDir({ prefix: "im-keystore-template-" });
await provision(template, { users: ["A", "B"], bits: BITS });
globalThis.addEventListener("unload", () => {
  Deno.removeSync(template, { recursive: true });
});

async function copyTree(src: string, dst: string): Promise<void> {
  const info = await Deno.stat(src);
  if (info.isDirectory) {
    await Deno.mkdir(dst, { recursive: true });
    for await (const e of Deno.readDir(src)) {
      await copyTree(join(src, e.name), join(dst, e.name));
    }
  } else {
    await Deno.copyFile(src, dst);
  }
  if (posix && info.mode !== null) await Deno.chmod(dst, info.mode & 0o777);
}

/** Run `f` with a fresh copy of the template (or an empty dir), removed afterwards. */
async function withDir(
  f: (dir: string) => Promise<void>,
  fromTemplate = true,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "im-keystore-" });
  try {
    if (fromTemplate) await copyTree(template, dir);
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Every file under `dir`: relative path -> hex of its bytes. */
async function snapshot(dir: string, rel = ""): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const e of Deno.readDir(join(dir, rel))) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) {
      for (const [k, v] of await snapshot(dir, r)) out.set(k, v);
    } else out.set(r, (await Deno.readFile(join(dir, r))).toHex());
  }
  return out;
}

function sameFiles(
  before: Map<string, string>,
  after: Map<string, string>,
  paths: string[],
): void {
  for (const p of paths) {
    assert.ok(before.has(p), `missing before: ${p}`);
    assert.equal(after.get(p), before.get(p), `${p} changed`);
  }
}

async function mode(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o777;
}

async function rejects(
  p: Promise<unknown>,
  cls: typeof KeyError | typeof AuthError,
  code: string,
): Promise<KeyError> {
  const e = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(e instanceof cls, `expected ${cls.name} ${code}, got ${e}`);
  assert.ok(!(e instanceof UsageError), "lib/ throws no usage error");
  assert.equal((e as KeyError).code, code, (e as Error).message);
  return e as KeyError;
}

/**
 * A keystore error's fix, its lib hint (which names no flag) and the hint
 * the CLI prints for it.
 */
function fixOf(e: KeyError): { fix: KeyFix; lib: string; cli: string } {
  assert.ok(e instanceof KeyStoreError, `a KeyStoreError: ${e}`);
  assert.ok(e.fix, `with a fix: ${e.message}`);
  const lib = e.hint ?? "";
  assert.ok(lib.length > 0, "the lib says what to do");
  assert.doesNotMatch(lib, /--[a-z]|im keygen/, "in its own words");
  return { fix: e.fix, lib, cli: cliHint(e) ?? "" };
}

const A_FILES = [
  "users/A/private.pem",
  "users/A/public.pem",
  "users/A/server.pem",
  "server/clients/A.pem",
];
const SERVER_FILES = ["server/private.pem", "server/public.pem"];

// ---------------------------------------------------------------------------
// provision()

Deno.test("provision() reports the server key, then each user's key, enrollment and pin", async () => {
  await withDir(async (dir) => {
    const r = await provision(dir, { users: ["A"], bits: BITS });
    assert.deepEqual(
      r.entries.map((e) => `${e.action} ${e.path}`),
      [
        "created server/private.pem",
        "created users/A/private.pem",
        "enrolled server/clients/A.pem",
        "pinned users/A/server.pem",
      ],
    );
    for (const e of r.entries) assert.match(e.fingerprint, FP);
    assert.equal(r.entries[0]!.fingerprint, r.entries[3]!.fingerprint);
    assert.equal(r.entries[1]!.fingerprint, r.entries[2]!.fingerprint);
  }, false);
});

Deno.test({
  name: "provision() makes private keys 0600 and directories 0700",
  ignore: !posix,
  async fn() {
    await withDir(async (dir) => {
      const fresh = join(dir, "new");
      await provision(fresh, { users: ["A"], bits: BITS });
      for (const d of ["", "server", "server/clients", "users", "users/A"]) {
        assert.equal(await mode(join(fresh, d)), 0o700, d);
      }
      for (const f of ["server/private.pem", "users/A/private.pem"]) {
        assert.equal(await mode(join(fresh, f)), 0o600, f);
      }
      for (
        const f of [
          "server/public.pem",
          "users/A/public.pem",
          "users/A/server.pem",
          "server/clients/A.pem",
        ]
      ) {
        assert.equal(await mode(join(fresh, f)), 0o644, f);
      }
      const names = [...(await snapshot(fresh)).keys()];
      assert.ok(
        names.every((n) => !n.endsWith(".tmp")),
        "no temporary files left",
      );
    }, false);
  },
});

Deno.test("provision() run again keeps every key byte-identical and reports kept", async () => {
  await withDir(async (dir) => {
    const before = await snapshot(dir);
    const r = await provision(dir, { users: ["A", "B"], bits: BITS });
    assert.ok(
      r.entries.every((e) => e.action === "kept"),
      JSON.stringify(r.entries),
    );
    assert.deepEqual(await snapshot(dir), before);
  });
});

Deno.test("provision() adding a user leaves the server and the other users byte-identical", async () => {
  await withDir(async (dir) => {
    const before = await snapshot(dir);
    const r = await provision(dir, { users: ["C"], bits: BITS });
    const after = await snapshot(dir);
    sameFiles(before, after, [...before.keys()]);
    assert.ok(
      after.has("users/C/private.pem") && after.has("server/clients/C.pem"),
    );
    assert.deepEqual(
      r.entries.map((e) => e.action),
      ["kept", "created", "enrolled", "pinned"],
    );
  });
});

Deno.test("provision() without force never replaces a key, even when bits differ", async () => {
  await withDir(async (dir) => {
    const before = await snapshot(dir);
    await provision(dir, { users: ["A"], bits: 3072 });
    sameFiles(before, await snapshot(dir), [...SERVER_FILES, ...A_FILES]);
  });
});

Deno.test("provision() with force replaces only the listed users' keys, not the server's", async () => {
  await withDir(async (dir) => {
    const before = await snapshot(dir);
    const r = await provision(dir, { users: ["A"], bits: BITS, force: true });
    const after = await snapshot(dir);
    assert.notEqual(
      after.get("users/A/private.pem"),
      before.get("users/A/private.pem"),
    );
    assert.equal(
      after.get("server/clients/A.pem"),
      after.get("users/A/public.pem"),
    );
    sameFiles(before, after, [
      ...SERVER_FILES,
      "users/A/server.pem",
      "users/B/private.pem",
      "server/clients/B.pem",
    ]);
    assert.deepEqual(r.entries.map((e) => e.action), [
      "kept",
      "replaced",
      "enrolled",
      "kept",
    ]);
    const server = await loadServerKeys(dir);
    const a = await loadUserKeys(dir, "A");
    assert.equal(server.clients.get("A")!.fingerprint, a.identity.fingerprint);
  });
});

Deno.test("provision() with forceServer replaces the server key and re-pins unlisted local users", async () => {
  await withDir(async (dir) => {
    const before = await snapshot(dir);
    const r = await provision(dir, {
      users: ["A"],
      bits: BITS,
      forceServer: true,
    });
    const after = await snapshot(dir);
    assert.notEqual(
      after.get("server/private.pem"),
      before.get("server/private.pem"),
    );
    sameFiles(before, after, ["users/A/private.pem", "users/B/private.pem"]);
    assert.equal(
      after.get("users/B/server.pem"),
      after.get("server/public.pem"),
    );
    assert.equal(
      after.get("users/A/server.pem"),
      after.get("server/public.pem"),
    );
    assert.deepEqual(
      r.entries.map((e) => `${e.action} ${e.path}`),
      [
        "replaced server/private.pem",
        "kept users/A/private.pem",
        "kept server/clients/A.pem",
        "pinned users/A/server.pem",
        "pinned users/B/server.pem",
      ],
    );
  });
});

Deno.test("provision() with users [] makes only the server key", async () => {
  await withDir(async (dir) => {
    const r = await provision(dir, { users: [], bits: BITS });
    assert.deepEqual(r.entries.map((e) => e.path), ["server/private.pem"]);
    assert.equal(await serverKeysExist(dir), true);
  }, false);
});

Deno.test("provision() provisions A..F by default", () => {
  assert.deepEqual(DEFAULT_USERS, ["A", "B", "C", "D", "E", "F"]);
});

Deno.test("provision() accepts a 32-character username", async () => {
  await withDir(async (dir) => {
    const name = "a".repeat(31) + "_";
    await provision(dir, { users: [name], bits: BITS });
    assert.equal((await loadServerKeys(dir)).clients.has(name), true);
  });
});

const BAD_NAMES = [
  "../x",
  "",
  "a".repeat(33),
  "a b",
  "A/B",
  "..",
  ".",
  "ä",
  "a\n",
  "a.pem",
  "-/",
];
for (const name of BAD_NAMES) {
  Deno.test(`provision() refuses username ${JSON.stringify(name)} before writing anything`, async () => {
    await withDir(async (dir) => {
      const target = join(dir, "k");
      await rejects(
        provision(target, { users: ["A", name], bits: BITS }),
        AuthError,
        "bad-username",
      );
      assert.equal(
        await Deno.stat(target).then(() => true, () => false),
        false,
      );
    }, false);
  });
}

for (const name of BAD_NAMES) {
  Deno.test(`loadUserKeys(), provisionPublicOnly(), enroll() and pinServerKey() refuse username ${JSON.stringify(name)}`, async () => {
    await withDir(async (dir) => {
      const before = await snapshot(dir);
      const pub = join(dir, "users/A/public.pem");
      await rejects(loadUserKeys(dir, name), AuthError, "bad-username");
      await rejects(
        provisionPublicOnly(dir, name, BITS),
        AuthError,
        "bad-username",
      );
      await rejects(
        enroll(dir, name, pub, { bits: BITS }),
        AuthError,
        "bad-username",
      );
      await rejects(pinServerKey(dir, name, pub), AuthError, "bad-username");
      assert.deepEqual(await snapshot(dir), before);
    });
  });
}

for (const bits of [1024, 8192, 2048.5]) {
  Deno.test(`provision() refuses ${bits} bits before writing anything`, async () => {
    await withDir(async (dir) => {
      const target = join(dir, "k");
      await rejects(
        provision(target, { users: ["A"], bits }),
        KeyError,
        "bad-bits",
      );
      assert.equal(
        await Deno.stat(target).then(() => true, () => false),
        false,
      );
    }, false);
  });
}

Deno.test("provision() into a path under a regular file gives KeyError naming the path", async () => {
  await withDir(async (dir) => {
    const file = join(dir, "file");
    await Deno.writeTextFile(file, "x");
    const e = await rejects(
      provision(join(file, "keys"), { users: ["A"], bits: BITS }),
      KeyError,
      "key-write-failed",
    );
    assert.match(
      e.message,
      /^Cannot create directory ".*file\/keys": a parent is not a directory$/,
    );
    assert.ok(e.hint);
  }, false);
});

Deno.test("provision() into a directory path that is a regular file gives KeyError", async () => {
  await withDir(async (dir) => {
    const file = join(dir, "file");
    await Deno.writeTextFile(file, "x");
    const e = await rejects(
      provision(file, { users: ["A"], bits: BITS }),
      KeyError,
      "key-write-failed",
    );
    assert.match(e.message, /a file is in the way/);
  }, false);
});

Deno.test("provision() refuses a public.pem left without its private.pem", async () => {
  await withDir(async (dir) => {
    await Deno.remove(join(dir, "users/A/private.pem"));
    const e = await rejects(
      provision(dir, { users: ["A"], bits: BITS }),
      KeyError,
      "key-orphan",
    );
    const { fix, cli } = fixOf(e);
    assert.equal(fix.kind, "remake-pair");
    assert.match(cli, /--force/);
  });
});

Deno.test("provision() refuses a public.pem that does not match private.pem", async () => {
  await withDir(async (dir) => {
    await Deno.copyFile(
      join(dir, "users/B/public.pem"),
      join(dir, "users/A/public.pem"),
    );
    const e = await rejects(
      provision(dir, { users: ["A"], bits: BITS }),
      KeyError,
      "key-mismatch",
    );
    assert.match(e.message, /does not match private key/);
  });
});

Deno.test("provision() re-creates a missing public.pem from private.pem", async () => {
  await withDir(async (dir) => {
    const before = await snapshot(dir);
    await Deno.remove(join(dir, "users/A/public.pem"));
    const r = await provision(dir, { users: ["A"], bits: BITS });
    assert.ok(
      r.entries.some((e) =>
        e.path === "users/A/public.pem" && e.action === "created"
      ),
    );
    sameFiles(before, await snapshot(dir), A_FILES);
  });
});

Deno.test("provision() refuses a different enrolled key without force and replaces it with force", async () => {
  await withDir(async (dir) => {
    await Deno.copyFile(
      join(dir, "server/clients/B.pem"),
      join(dir, "server/clients/A.pem"),
    );
    const e = await rejects(
      provision(dir, { users: ["A"], bits: BITS }),
      KeyError,
      "key-mismatch",
    );
    assert.match(e.message, /SHA256:.*SHA256:/);
    await provision(dir, { users: ["A"], bits: BITS, force: true });
    const s = await snapshot(dir);
    assert.equal(s.get("server/clients/A.pem"), s.get("users/A/public.pem"));
  });
});

Deno.test("provision() refuses a private key that is not a key", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(join(dir, "users/A/private.pem"), "garbage\n");
    await rejects(
      provision(dir, { users: ["A"], bits: BITS }),
      KeyError,
      "bad-pem",
    );
  });
});

// ---------------------------------------------------------------------------
// Loading

Deno.test("loadServerKeys() and loadUserKeys() give matching identities", async () => {
  await withDir(async (dir) => {
    const server = await loadServerKeys(dir);
    assert.deepEqual([...server.clients.keys()].sort(), ["A", "B"]);
    assert.deepEqual(server.problems, []);
    for (const u of ["A", "B"]) {
      const keys = await loadUserKeys(dir, u);
      assert.equal(keys.pinnedServer.fingerprint, server.identity.fingerprint);
      assert.equal(
        server.clients.get(u)!.fingerprint,
        keys.identity.fingerprint,
      );
    }
  });
});

Deno.test("a user's signature verifies with the server's directory entry, and the server's OAEP reaches the user", async () => {
  await withDir(async (dir) => {
    const server = await loadServerKeys(dir);
    const a = await loadUserKeys(dir, "A");
    const data = new TextEncoder().encode("transcript");
    const sig = await signPss(a.identity.sign, data);
    assert.ok(await verifyPss(server.clients.get("A")!.verify, sig, data));
    assert.equal(
      await verifyPss(server.clients.get("B")!.verify, sig, data),
      false,
    );
    const label = new TextEncoder().encode("label");
    const ct = await encryptOaep(
      server.clients.get("A")!.encrypt,
      new Uint8Array(32).fill(9),
      label,
    );
    assert.deepEqual(
      await decryptOaep(a.identity.decrypt, ct, label),
      new Uint8Array(32).fill(9),
    );
  });
});

Deno.test("loadUserKeys() on a missing user gives KeyError naming the path, with a keygen hint", async () => {
  await withDir(async (dir) => {
    const e = await rejects(loadUserKeys(dir, "G"), KeyError, "key-missing");
    assert.match(
      e.message,
      /^Cannot read private key ".*users\/G\/private\.pem": no such file or directory$/,
    );
    const { fix, cli } = fixOf(e);
    assert.deepEqual(fix, { kind: "provision-user", dir, user: "G" });
    assert.match(cli, /im keygen .*--user G/);
  });
});

Deno.test("loadUserKeys() without a pinned server key gives KeyError with a --pin hint", async () => {
  await withDir(async (dir) => {
    await Deno.remove(join(dir, "users/A/server.pem"));
    const e = await rejects(loadUserKeys(dir, "A"), KeyError, "key-missing");
    assert.match(e.message, /server\.pem/);
    const { fix, cli } = fixOf(e);
    assert.deepEqual(fix, { kind: "pin-server", dir, user: "A" });
    assert.match(cli, /--pin FILE --user A/);
  });
});

Deno.test("loadServerKeys() on an empty directory gives KeyError with a keygen hint", async () => {
  await withDir(async (dir) => {
    const e = await rejects(loadServerKeys(dir), KeyError, "key-missing");
    assert.match(e.message, /server\/private\.pem/);
    const { fix, cli } = fixOf(e);
    assert.deepEqual(fix, { kind: "provision-server", dir });
    assert.match(cli, /^run "im keygen/);
    assert.equal(await serverKeysExist(dir), false);
  }, false);
});

Deno.test({
  name: "loadUserKeys() refuses a private key that group or others can read",
  ignore: !posix,
  async fn() {
    await withDir(async (dir) => {
      const path = join(dir, "users/A/private.pem");
      for (const m of [0o644, 0o640, 0o604, 0o660]) {
        await Deno.chmod(path, m);
        const e = await rejects(
          loadUserKeys(dir, "A"),
          KeyError,
          "key-permissions",
        );
        assert.match(
          e.message,
          new RegExp(`mode 0${m.toString(8)} lets group or others read it`),
        );
        assert.match(e.hint ?? "", /chmod 600/);
      }
      await Deno.chmod(path, 0o400);
      await loadUserKeys(dir, "A");
    });
  },
});

Deno.test({
  name: "loadServerKeys() refuses a server private key that others can read",
  ignore: !posix,
  async fn() {
    await withDir(async (dir) => {
      await Deno.chmod(join(dir, "server/private.pem"), 0o604);
      await rejects(loadServerKeys(dir), KeyError, "key-permissions");
    });
  },
});

Deno.test({
  name: "loadUserKeys() refuses a pinned server key that others can change",
  ignore: !posix,
  async fn() {
    await withDir(async (dir) => {
      await Deno.chmod(join(dir, "users/A/server.pem"), 0o666);
      const e = await rejects(
        loadUserKeys(dir, "A"),
        KeyError,
        "key-permissions",
      );
      assert.match(e.message, /lets group or others change it/);
    });
  },
});

Deno.test("loadUserKeys() refuses a pinned server key that is a private key", async () => {
  await withDir(async (dir) => {
    const priv = await Deno.readTextFile(join(dir, "server/private.pem"));
    await Deno.writeTextFile(join(dir, "users/A/server.pem"), priv);
    await rejects(loadUserKeys(dir, "A"), KeyError, "bad-pem");
  });
});

Deno.test("loadUserKeys() refuses a private key that is a directory", async () => {
  await withDir(async (dir) => {
    await Deno.remove(join(dir, "users/A/private.pem"));
    await Deno.mkdir(join(dir, "users/A/private.pem"));
    const e = await rejects(loadUserKeys(dir, "A"), KeyError, "key-unreadable");
    assert.match(e.message, /not a regular file/);
  });
});

Deno.test("loadUserKeys() refuses an oversized key file before parsing it", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "users/A/private.pem");
    await Deno.writeTextFile(path, "A".repeat(100_000), { mode: 0o600 });
    const e = await rejects(loadUserKeys(dir, "A"), KeyError, "bad-pem");
    assert.match(e.message, /exceeds the limit/);
  });
});

Deno.test("loadClientDirectory() skips and reports bad names, bad keys and non-files", async () => {
  await withDir(async (dir) => {
    const clients = join(dir, "server/clients");
    const good = await Deno.readTextFile(join(clients, "A.pem"));
    const ec = await crypto.subtle.generateKey(
      { name: "ECDSA", namedCurve: "P-256" },
      true,
      ["sign", "verify"],
    );
    const ecPem = pemEncode(
      "PUBLIC KEY",
      new Uint8Array(await crypto.subtle.exportKey("spki", ec.publicKey)),
    );
    const files: Record<string, string> = {
      "bad name.pem": good,
      [`${"x".repeat(33)}.pem`]: good,
      "README": "hello",
      "C.txt": good,
      "..pem": good,
      "Z.pem": "not a key",
      "E.pem": ecPem,
    };
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(join(clients, name), text);
    }
    await Deno.mkdir(join(clients, "D.pem"));
    const r = await loadClientDirectory(dir);
    assert.deepEqual([...r.clients.keys()].sort(), ["A", "B"]);
    assert.equal(r.problems.length, Object.keys(files).length + 1);
    assert.ok(
      r.problems.every((p) => p.startsWith("Skipped ")),
      r.problems.join("\n"),
    );
    assert.ok(
      r.problems.some((p) =>
        p.includes("Z.pem") &&
        p.includes('no "-----BEGIN PUBLIC KEY-----" line')
      ),
    );
    assert.ok(
      r.problems.some((p) =>
        p.includes("E.pem") && p.includes("not an RSA key")
      ),
    );
    assert.ok(
      r.problems.some((p) =>
        p.includes("D.pem") && p.includes("not a regular file")
      ),
    );
  });
});

Deno.test("loadClientDirectory() says it is incomplete when the directory itself cannot be read, and complete otherwise", async () => {
  await withDir(async (dir) => {
    const ok = await loadClientDirectory(dir);
    assert.equal(ok.complete, true);
    await Deno.rename(join(dir, "server/clients"), join(dir, "server/moved"));
    const gone = await loadClientDirectory(dir);
    assert.equal(gone.complete, false);
    assert.equal(gone.clients.size, 0);
    assert.match(gone.problems[0] ?? "", /Cannot read the client directory/);
  });
});

Deno.test({
  name: "loadClientDirectory() skips a client key that others can change",
  ignore: !posix,
  async fn() {
    await withDir(async (dir) => {
      await Deno.chmod(join(dir, "server/clients/B.pem"), 0o646);
      const r = await loadClientDirectory(dir);
      assert.deepEqual([...r.clients.keys()], ["A"]);
      assert.match(
        r.problems[0] ?? "",
        /B\.pem.*lets group or others change it/,
      );
    });
  },
});

Deno.test("loadClientDirectory() without a client directory reports it and returns no clients", async () => {
  await withDir(async (dir) => {
    const r = await loadClientDirectory(dir);
    assert.equal(r.clients.size, 0);
    assert.match(r.problems[0] ?? "", /Cannot read the client directory/);
  }, false);
});

Deno.test("serverKeysExist() tells whether server/private.pem exists", async () => {
  await withDir(async (dir) => {
    assert.equal(await serverKeysExist(dir), true);
    await Deno.remove(join(dir, "server/private.pem"));
    assert.equal(await serverKeysExist(dir), false);
  });
});

Deno.test("defaultKeyDir() is $IM_KEYS when set, else keys", () => {
  const old = Deno.env.get("IM_KEYS");
  try {
    Deno.env.set("IM_KEYS", "/tmp/elsewhere");
    assert.equal(defaultKeyDir(), "/tmp/elsewhere");
    Deno.env.delete("IM_KEYS");
    assert.equal(defaultKeyDir(), "keys");
    Deno.env.set("IM_KEYS", "");
    assert.equal(defaultKeyDir(), "keys");
  } finally {
    if (old === undefined) Deno.env.delete("IM_KEYS");
    else Deno.env.set("IM_KEYS", old);
  }
});

// ---------------------------------------------------------------------------
// Two machines: public-only, enroll, pin

Deno.test("provisionPublicOnly() + enroll() + pinServerKey() let a user on another machine log in", async () => {
  await withDir(async (serverDir) => {
    await withDir(async (userDir) => {
      const made = await provisionPublicOnly(userDir, "G", BITS);
      assert.deepEqual(made.entries.map((e) => `${e.action} ${e.path}`), [
        "created users/G/private.pem",
      ]);
      assert.deepEqual([...(await snapshot(userDir)).keys()].sort(), [
        "users/G/private.pem",
        "users/G/public.pem",
      ]);
      if (posix) {
        assert.equal(await mode(join(userDir, "users/G/private.pem")), 0o600);
      }

      const before = await snapshot(serverDir);
      const en = await enroll(
        serverDir,
        "G",
        join(userDir, "users/G/public.pem"),
        { bits: BITS },
      );
      assert.deepEqual(en.entries.map((e) => `${e.action} ${e.path}`), [
        "kept server/private.pem",
        "enrolled server/clients/G.pem",
      ]);
      sameFiles(before, await snapshot(serverDir), [...before.keys()]);

      const pin = await pinServerKey(userDir, "G", en.serverPublicPath);
      assert.equal(pin.action, "pinned");
      assert.equal(pin.fingerprint, en.serverFingerprint);

      const server = await loadServerKeys(serverDir);
      const g = await loadUserKeys(userDir, "G");
      assert.equal(g.pinnedServer.fingerprint, server.identity.fingerprint);
      assert.equal(
        server.clients.get("G")!.fingerprint,
        g.identity.fingerprint,
      );
    }, false);
  });
});

Deno.test("enroll() creates the server key when there is none", async () => {
  await withDir(async (dir) => {
    const { publicPem } = await generateRsaKeyPair(BITS);
    const file = join(dir, "g.pem");
    await Deno.writeTextFile(file, publicPem);
    const r = await enroll(join(dir, "k"), "G", file, { bits: BITS });
    assert.deepEqual(r.entries.map((e) => e.action), ["created", "enrolled"]);
    assert.equal(await serverKeysExist(join(dir, "k")), true);
  }, false);
});

Deno.test("enroll() of the same key again is kept; of a different key is refused unless force", async () => {
  await withDir(async (dir) => {
    const a = join(dir, "users/A/public.pem");
    const b = join(dir, "users/B/public.pem");
    const again = await enroll(dir, "A", a, { bits: BITS });
    assert.equal(again.entries.at(-1)!.action, "kept");
    const e = await rejects(
      enroll(dir, "A", b, { bits: BITS }),
      KeyError,
      "key-mismatch",
    );
    const { fix, cli } = fixOf(e);
    assert.deepEqual(fix, { kind: "replace-enrolled", user: "A" });
    assert.match(cli, /--force/);
    const forced = await enroll(dir, "A", b, { bits: BITS, force: true });
    assert.equal(forced.entries.at(-1)!.action, "enrolled");
    const s = await snapshot(dir);
    assert.equal(s.get("server/clients/A.pem"), s.get("users/B/public.pem"));
  });
});

Deno.test("enroll() refuses a missing file, a private key and bad base64, changing nothing", async () => {
  await withDir(async (dir) => {
    const before = await snapshot(dir);
    await rejects(
      enroll(dir, "G", join(dir, "nope.pem"), { bits: BITS }),
      KeyError,
      "key-missing",
    );
    await rejects(
      enroll(dir, "G", join(dir, "users/A/private.pem"), { bits: BITS }),
      KeyError,
      "bad-pem",
    );
    const junk = join(dir, "junk.pem");
    await Deno.writeTextFile(
      junk,
      "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n",
    );
    await rejects(enroll(dir, "G", junk, { bits: BITS }), KeyError, "bad-pem");
    await Deno.remove(junk);
    assert.deepEqual(await snapshot(dir), before);
  });
});

Deno.test("enroll() stores a canonical copy of a CRLF PEM", async () => {
  await withDir(async (dir) => {
    const pub = await Deno.readTextFile(join(dir, "users/A/public.pem"));
    const file = join(dir, "crlf.pem");
    await Deno.writeTextFile(file, pub.replaceAll("\n", "\r\n"));
    await enroll(dir, "H", file, { bits: BITS });
    assert.equal(
      await Deno.readTextFile(join(dir, "server/clients/H.pem")),
      pub,
    );
  });
});

Deno.test("pinServerKey() refuses a different server key without force, naming both fingerprints", async () => {
  await withDir(async (dir) => {
    const other = join(dir, "users/B/public.pem");
    const e = await rejects(
      pinServerKey(dir, "A", other),
      KeyError,
      "key-mismatch",
    );
    assert.match(
      e.message,
      /holds a different key \(SHA256:.{43}\) than the one given \(SHA256:.{43}\)/,
    );
    const s = await snapshot(dir);
    assert.equal(s.get("users/A/server.pem"), s.get("server/public.pem"));
    const forced = await pinServerKey(dir, "A", other, true);
    assert.equal(forced.action, "pinned");
    const s2 = await snapshot(dir);
    assert.equal(s2.get("users/A/server.pem"), s2.get("users/B/public.pem"));
  });
});

Deno.test("pinServerKey() of the same key again is kept and changes nothing", async () => {
  await withDir(async (dir) => {
    const before = await snapshot(dir);
    const r = await pinServerKey(dir, "A", join(dir, "server/public.pem"));
    assert.equal(r.action, "kept");
    assert.deepEqual(await snapshot(dir), before);
  });
});

Deno.test("provisionPublicOnly() keeps an existing key without force and replaces it with force", async () => {
  await withDir(async (dir) => {
    const before = await snapshot(dir);
    const kept = await provisionPublicOnly(dir, "A", BITS);
    assert.equal(kept.entries[0]!.action, "kept");
    sameFiles(before, await snapshot(dir), A_FILES);
    const forced = await provisionPublicOnly(dir, "A", BITS, true);
    assert.equal(forced.entries[0]!.action, "replaced");
    const after = await snapshot(dir);
    assert.notEqual(
      after.get("users/A/private.pem"),
      before.get("users/A/private.pem"),
    );
  });
});

// ---------------------------------------------------------------------------
// Directory permissions (issue 10 item 9): a directory of the key directory
// that group or others can write is refused everywhere, as sshd's
// StrictModes refuses one above authorized_keys.

/** Modes that let group or others write, sticky bit included. */
const WRITABLE_MODES = [0o777, 0o770, 0o707, 0o775, 0o757, 0o1777];
/** Modes that do not. */
const SAFE_MODES = [0o700, 0o750, 0o755, 0o500];

/** A `key-dir-writable` error for `path` found at mode `m`, with its chmod fix. */
function assertDirWritable(e: KeyError, path: string, m: number): void {
  assert.ok(e instanceof KeyStoreError);
  assert.equal(e.code, "key-dir-writable");
  assert.equal(e.path, path);
  assert.equal(e.mode, m, "the mode found is carried as a field");
  const perm = m.toString(8).padStart(4, "0");
  assert.equal(
    e.message,
    `Refusing to use key directory "${path}": mode ${perm} lets group or others write to it`,
  );
  const { fix, lib, cli } = fixOf(e);
  assert.deepEqual(fix, { kind: "chmod-dir", path, mode: 0o700 });
  assert.match(lib, new RegExp(`^run "chmod 700 ${path}"`));
  assert.match(lib, /check/, "and says to check what is in it");
  assert.equal(cli, lib, "no flag fixes it: the CLI prints the lib's words");
}

Deno.test({
  name:
    "loadServerKeys() refuses the key root, server/ or server/clients/ when group or others can write it, naming the path and the mode",
  ignore: !posix,
  async fn() {
    await withDir(async (dir) => {
      for (const rel of ["", "server", "server/clients"]) {
        const path = rel ? join(dir, rel) : dir;
        for (const m of WRITABLE_MODES) {
          await Deno.chmod(path, m);
          const e = await rejects(
            loadServerKeys(dir),
            KeyError,
            "key-dir-writable",
          );
          assertDirWritable(e, path, m);
        }
        for (const m of SAFE_MODES) {
          await Deno.chmod(path, m);
          await loadServerKeys(dir);
        }
        await Deno.chmod(path, 0o700);
      }
    });
  },
});

Deno.test({
  name:
    "loadUserKeys() refuses the key root, users/ or users/<user>/ when group or others can write it",
  ignore: !posix,
  async fn() {
    await withDir(async (dir) => {
      for (const rel of ["", "users", "users/A"]) {
        const path = rel ? join(dir, rel) : dir;
        await Deno.chmod(path, 0o777);
        const e = await rejects(
          loadUserKeys(dir, "A"),
          KeyError,
          "key-dir-writable",
        );
        assertDirWritable(e, path, 0o777);
        await Deno.chmod(path, 0o755);
        await loadUserKeys(dir, "A");
        await Deno.chmod(path, 0o700);
      }
      // Another user's folder is not A's business.
      await Deno.chmod(join(dir, "users/B"), 0o777);
      await loadUserKeys(dir, "A");
    });
  },
});

Deno.test({
  name:
    "loadClientDirectory() (what a reload reads) refuses a writable server/clients/: a key planted there is not loaded",
  ignore: !posix,
  async fn() {
    await withDir(async (dir) => {
      const clients = join(dir, "server/clients");
      await Deno.chmod(clients, 0o777);
      await Deno.copyFile(join(clients, "A.pem"), join(clients, "G.pem"));
      const e = await rejects(
        loadClientDirectory(dir),
        KeyError,
        "key-dir-writable",
      );
      assertDirWritable(e, clients, 0o777);
      await Deno.chmod(join(dir, "server"), 0o777);
      await Deno.chmod(clients, 0o700);
      const outer = await rejects(
        loadClientDirectory(dir),
        KeyError,
        "key-dir-writable",
      );
      assertDirWritable(outer, join(dir, "server"), 0o777);
    });
  },
});

Deno.test({
  name:
    "provision(), provisionPublicOnly(), enroll() and pinServerKey() refuse an existing directory others can write, before writing anything",
  ignore: !posix,
  async fn() {
    await withDir(async (dir) => {
      const pub = join(dir, "users/A/public.pem");
      const server = join(dir, "server/public.pem");
      const calls: [string, () => Promise<unknown>][] = [
        ["", () => provision(dir, { users: ["G"], bits: BITS })],
        ["server", () => provision(dir, { users: [], bits: BITS })],
        ["server/clients", () => provision(dir, { users: ["G"], bits: BITS })],
        ["users", () => provision(dir, { users: ["G"], bits: BITS })],
        ["users/A", () => provision(dir, { users: ["A"], bits: BITS })],
        ["users", () => provisionPublicOnly(dir, "G", BITS)],
        ["", () => enroll(dir, "G", pub, { bits: BITS })],
        ["server/clients", () => enroll(dir, "G", pub, { bits: BITS })],
        ["users/A", () => pinServerKey(dir, "A", server, true)],
      ];
      for (const [rel, call] of calls) {
        const path = rel ? join(dir, rel) : dir;
        await Deno.chmod(path, 0o777);
        const before = await snapshot(dir);
        const e = await rejects(call(), KeyError, "key-dir-writable");
        assertDirWritable(e, path, 0o777);
        assert.deepEqual(
          await snapshot(dir),
          before,
          `${rel}: nothing written`,
        );
        await Deno.chmod(path, 0o700);
      }
    });
  },
});

Deno.test({
  name:
    "provision() into a new nested path makes every directory it creates 0700, parents included",
  ignore: !posix,
  async fn() {
    await withDir(async (dir) => {
      const target = join(dir, "a/b/keys");
      await provision(target, { users: ["G"], bits: BITS });
      for (
        const rel of [
          "a",
          "a/b",
          "a/b/keys",
          "a/b/keys/server",
          "a/b/keys/server/clients",
          "a/b/keys/users",
          "a/b/keys/users/G",
        ]
      ) {
        assert.equal(await mode(join(dir, rel)), 0o700, rel);
      }
      await loadServerKeys(target);
      await loadUserKeys(target, "G");
    }, false);
  },
});

Deno.test("listUsers() names the valid users under users/ that have a private key, sorted; none without users/", async () => {
  const dir = await Deno.makeTempDir({ prefix: "im-list-" });
  try {
    assert.deepEqual(await listUsers(dir), []);
    for (const u of ["B", "A", "no key", "C"]) {
      await Deno.mkdir(`${dir}/users/${u}`, { recursive: true, mode: 0o700 });
    }
    await Deno.writeTextFile(`${dir}/users/A/private.pem`, "x", {
      mode: 0o600,
    });
    await Deno.writeTextFile(`${dir}/users/B/private.pem`, "x", {
      mode: 0o600,
    });
    await Deno.writeTextFile(`${dir}/users/no key/private.pem`, "x", {
      mode: 0o600,
    });
    await Deno.writeTextFile(`${dir}/users/C/public.pem`, "x", { mode: 0o600 });
    assert.deepEqual(await listUsers(dir), ["A", "B"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------
// Partners' keys pinned on first use (PROTOCOL.md section 6, key continuity)

/** B's public key as the template enrolled it, and a new one of B's. */
async function bKeys(dir: string) {
  const enrolled = (await loadServerKeys(dir)).clients.get("B")!;
  const renewed = await loadPublicIdentity(
    (await generateRsaKeyPair(BITS)).publicPem,
  );
  return { enrolled, renewed };
}

Deno.test({
  name:
    "pinPeer() pins B's key for A in users/A/peers/B.pem: the SPKI PEM, 0600 in a 0700 folder; loadPinnedPeer() reads it back; nothing is pinned before",
  ignore: !posix,
  async fn() {
    await withDir(async (dir) => {
      const { enrolled } = await bKeys(dir);
      assert.equal(await loadPinnedPeer(dir, "A", "B"), undefined);
      assert.equal(await pinPeer(dir, "A", "B", enrolled), "pinned");
      const path = join(dir, "users/A/peers/B.pem");
      assert.equal(peerPinPath(dir, "A", "B"), path);
      assert.equal(await mode(path), 0o600);
      assert.equal(await mode(join(dir, "users/A/peers")), 0o700);
      assert.equal(
        await Deno.readTextFile(path),
        pemEncode("PUBLIC KEY", enrolled.publicDer),
      );
      const back = await loadPinnedPeer(dir, "A", "B");
      assert.equal(back?.fingerprint, enrolled.fingerprint);
      // Pins are per user: B pinned nothing for A, nor A for C.
      assert.equal(await loadPinnedPeer(dir, "B", "A"), undefined);
      assert.equal(await loadPinnedPeer(dir, "A", "C"), undefined);
    });
  },
});

Deno.test("pinPeer() of the same key again is kept and changes nothing; of another key is peer-key-changed naming both fingerprints and the file to remove, and the pin stays", async () => {
  await withDir(async (dir) => {
    const { enrolled, renewed } = await bKeys(dir);
    await pinPeer(dir, "A", "B", enrolled);
    const before = await snapshot(dir);
    assert.equal(await pinPeer(dir, "A", "B", enrolled), "kept");
    const path = join(dir, "users/A/peers/B.pem");
    const e = await rejects(
      pinPeer(dir, "A", "B", renewed),
      KeyError,
      "peer-key-changed",
    );
    assert.ok(e.message.includes(enrolled.fingerprint), e.message);
    assert.ok(e.message.includes(renewed.fingerprint), e.message);
    const { fix, lib, cli } = fixOf(e);
    assert.deepEqual(fix, { kind: "remove-pin", peer: "B", path });
    assert.match(lib, /if B really has a new key/);
    assert.ok(lib.includes(`remove "${path}"`), lib);
    assert.equal(cli, lib, "no flag fixes it: the CLI prints the lib's words");
    sameFiles(before, await snapshot(dir), ["users/A/peers/B.pem"]);
  });
});

Deno.test("removing the pin file lets pinPeer() pin the new key", async () => {
  await withDir(async (dir) => {
    const { enrolled, renewed } = await bKeys(dir);
    await pinPeer(dir, "A", "B", enrolled);
    await Deno.remove(peerPinPath(dir, "A", "B"));
    assert.equal(await loadPinnedPeer(dir, "A", "B"), undefined);
    assert.equal(await pinPeer(dir, "A", "B", renewed), "pinned");
    assert.equal(
      (await loadPinnedPeer(dir, "A", "B"))?.fingerprint,
      renewed.fingerprint,
    );
  });
});

Deno.test("peerPinStore() reads each pin anew: a pin removed or written behind its back is seen at once", async () => {
  await withDir(async (dir) => {
    const { enrolled, renewed } = await bKeys(dir);
    const pins = peerPinStore(dir, "A");
    assert.equal(pins.where("B"), join(dir, "users/A/peers/B.pem"));
    assert.equal(await pins.pin("B", enrolled), "pinned");
    assert.equal((await pins.load("B"))?.fingerprint, enrolled.fingerprint);
    await Deno.remove(pins.where("B")!);
    assert.equal(await pins.load("B"), undefined);
    await pinPeer(dir, "A", "B", renewed);
    assert.equal((await pins.load("B"))?.fingerprint, renewed.fingerprint);
  });
});

Deno.test("the pin functions refuse a bad username before touching a path", async () => {
  await withDir(async (dir) => {
    const { enrolled } = await bKeys(dir);
    const before = await snapshot(dir);
    for (const [me, peer] of [["A", "../B"], ["../A", "B"], ["A", ""]]) {
      await rejects(
        loadPinnedPeer(dir, me!, peer!),
        AuthError,
        "bad-username",
      );
      await rejects(
        pinPeer(dir, me!, peer!, enrolled),
        AuthError,
        "bad-username",
      );
    }
    assert.throws(() => peerPinStore(dir, "a/b"), AuthError);
    assert.deepEqual(await snapshot(dir), before);
  });
});

Deno.test({
  name:
    "loadPinnedPeer() refuses a pin that group or others can write, and users/A/peers/ when group or others can write it (a key planted there is not trusted)",
  ignore: !posix,
  async fn() {
    await withDir(async (dir) => {
      const { enrolled } = await bKeys(dir);
      await pinPeer(dir, "A", "B", enrolled);
      const path = peerPinPath(dir, "A", "B");
      await Deno.chmod(path, 0o622);
      const e = await rejects(
        loadPinnedPeer(dir, "A", "B"),
        KeyError,
        "key-permissions",
      );
      assert.equal((e as KeyStoreError).path, path);
      await Deno.chmod(path, 0o600);
      const peers = join(dir, "users/A/peers");
      await Deno.chmod(peers, 0o777);
      const d = await rejects(
        loadPinnedPeer(dir, "A", "B"),
        KeyError,
        "key-dir-writable",
      );
      assertDirWritable(d, peers, 0o777);
      await rejects(
        pinPeer(dir, "A", "C", enrolled),
        KeyError,
        "key-dir-writable",
      );
      await Deno.chmod(peers, 0o700);
      assert.equal(
        (await loadPinnedPeer(dir, "A", "B"))?.fingerprint,
        enrolled.fingerprint,
      );
    });
  },
});

Deno.test("loadPinnedPeer() refuses a pin that is not a public key (a private key, garbage) with a KeyError naming the file", async () => {
  await withDir(async (dir) => {
    const { enrolled } = await bKeys(dir);
    await pinPeer(dir, "A", "B", enrolled);
    const path = peerPinPath(dir, "A", "B");
    for (
      const text of [
        await Deno.readTextFile(join(dir, "users/B/private.pem")),
        "not a key\n",
      ]
    ) {
      await Deno.writeTextFile(path, text);
      const e = await loadPinnedPeer(dir, "A", "B").then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(e instanceof KeyError, String(e));
      assert.ok(e.message.includes(path), e.message);
      // And such a pin is not replaced behind the user's back either.
      await assert.rejects(() => pinPeer(dir, "A", "B", enrolled), KeyError);
    }
  });
});
