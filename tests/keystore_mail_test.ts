/**
 * The client's mailbox in the key directory (`lib/keystore/mail_vault.ts`;
 * PROTOCOL.md 9.1 "At rest" and "The peer's keys", 9.5, 9.6): every kind of
 * entry survives a close and a new `openMailVault` on the same folder;
 * private keys are written 0600 in 0700 folders and come back
 * non-extractable yet deriving the same secrets; ids are never reused;
 * `seen` drops what is older than 32 days at open and tolerates a torn last
 * record; a folder group or others can write is refused; a dropped key's
 * file is gone.
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { sharedSecret } from "../lib/crypto/mod.ts";
import type { MailKeyPair, MailVault } from "../lib/proto/mod.ts";
import { openMailVault, SEEN_KEEP_MS } from "../lib/keystore/mod.ts";
import type { KeyError } from "../lib/util/mod.ts";

const posix = Deno.build.os !== "windows";
const DAY = 86_400_000;

/** Run `f` with a fresh key directory, removed afterwards. */
async function withDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "im-mail-vault-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const mailDir = (dir: string) => join(dir, "users", "A", "mail");
const peersDir = (dir: string) => join(dir, "users", "A", "peers");
const reopen = (dir: string, now?: number): Promise<MailVault> =>
  openMailVault(dir, "A", now === undefined ? {} : { now });

/** An extractable pair, as the client makes them for the vault. */
async function pair(): Promise<MailKeyPair> {
  const p = await crypto.subtle.generateKey({ name: "X25519" }, true, [
    "deriveBits",
  ]) as CryptoKeyPair;
  return {
    privateKey: p.privateKey,
    publicRaw: new Uint8Array(
      await crypto.subtle.exportKey("raw", p.publicKey),
    ),
  };
}

function id16(n: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(16).fill(n);
}

async function gone(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return false;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return true;
    throw e;
  }
}

async function mode(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o777;
}

/** The same X25519 secret from the key read back as from the one saved. */
async function assertSameKey(
  back: MailKeyPair,
  saved: MailKeyPair,
): Promise<void> {
  assert.equal(back.privateKey.extractable, false, "read back non-extractable");
  assert.deepEqual(back.publicRaw, saved.publicRaw);
  const other = await pair();
  assert.deepEqual(
    await sharedSecret(back, other.publicRaw),
    await sharedSecret(saved, other.publicRaw),
  );
}

Deno.test("openMailVault() keeps the identity key across a reopen: 0600 in a 0700 folder, non-extractable, the same X25519 secrets", async () => {
  await withDir(async (dir) => {
    const v = await reopen(dir);
    assert.equal(await v.identity(), undefined);
    assert.ok(await gone(mailDir(dir)), "nothing is created before a write");
    const ik = await pair();
    const cert = new Uint8Array([1, 2, 3, 4, 5]);
    await v.saveIdentity({ pair: ik, cert, created: 1_700_000_000_000 });
    const back = await (await reopen(dir)).identity();
    assert.ok(back);
    assert.deepEqual(back.cert, cert);
    assert.equal(back.created, 1_700_000_000_000);
    await assertSameKey(back.pair, ik);
    const pem = await Deno.readTextFile(join(mailDir(dir), "identity.pem"));
    assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/);
    if (posix) {
      assert.equal(await mode(join(mailDir(dir), "identity.pem")), 0o600);
      assert.equal(await mode(join(mailDir(dir), "identity.cert")), 0o600);
      assert.equal(await mode(mailDir(dir)), 0o700);
      assert.equal(await mode(join(dir, "users", "A")), 0o700);
    }
  });
});

Deno.test("saveIdentity() replaces the identity key: the new key and certificate are read back, never the old key with the new certificate", async () => {
  await withDir(async (dir) => {
    const v = await reopen(dir);
    await v.saveIdentity({
      pair: await pair(),
      cert: new Uint8Array([1]),
      created: 1,
    });
    const ik2 = await pair();
    await v.saveIdentity({ pair: ik2, cert: new Uint8Array([2]), created: 2 });
    const back = await (await reopen(dir)).identity();
    assert.deepEqual(back?.cert, new Uint8Array([2]));
    await assertSameKey(back!.pair, ik2);
  });
});

Deno.test("saveIdentity() refuses a non-extractable key and a public key that is not the private key's, writing nothing", async () => {
  await withDir(async (dir) => {
    const v = await reopen(dir);
    const fixed = await crypto.subtle.generateKey({ name: "X25519" }, false, [
      "deriveBits",
    ]) as CryptoKeyPair;
    const raw = new Uint8Array(
      await crypto.subtle.exportKey("raw", fixed.publicKey),
    );
    await assert.rejects(
      v.saveIdentity({
        pair: { privateKey: fixed.privateKey, publicRaw: raw },
        cert: new Uint8Array([1]),
        created: 1,
      }),
      (e: KeyError) => e.code === "wrong-key",
    );
    await assert.rejects(
      v.saveIdentity({
        pair: { privateKey: (await pair()).privateKey, publicRaw: raw },
        cert: new Uint8Array([1]),
        created: 1,
      }),
      (e: KeyError) => e.code === "key-mismatch",
    );
    assert.equal(await (await reopen(dir)).identity(), undefined);
  });
});

Deno.test("signed prekeys survive a reopen oldest first with their dates and certificates; dropSignedPrekey() removes both files", async () => {
  await withDir(async (dir) => {
    const v = await reopen(dir);
    const first = await v.allocateIds("spk", 1);
    const second = await v.allocateIds("spk", 1);
    const k1 = await pair(), k2 = await pair();
    await v.saveSignedPrekey({
      id: second,
      pair: k2,
      cert: new Uint8Array([2]),
      created: 20,
      expires: 30,
    });
    await v.saveSignedPrekey({
      id: first,
      pair: k1,
      cert: new Uint8Array([1]),
      created: 10,
      expires: 40,
    });
    const back = await (await reopen(dir)).signedPrekeys();
    assert.deepEqual(back.map((s) => s.id), [first, second]);
    assert.deepEqual(back.map((s) => [s.created, s.expires]), [[10, 40], [
      20,
      30,
    ]]);
    assert.deepEqual(back[1]!.cert, new Uint8Array([2]));
    await assertSameKey(back[0]!.pair, k1);
    await assertSameKey(back[1]!.pair, k2);
    if (posix) {
      assert.equal(await mode(join(mailDir(dir), `spk-${first}.pem`)), 0o600);
    }
    const v2 = await reopen(dir);
    await v2.dropSignedPrekey(first);
    assert.ok(await gone(join(mailDir(dir), `spk-${first}.pem`)));
    assert.ok(await gone(join(mailDir(dir), `spk-${first}.cert`)));
    assert.deepEqual((await v2.signedPrekeys()).map((s) => s.id), [second]);
    assert.deepEqual(
      (await (await reopen(dir)).signedPrekeys()).map((s) => s.id),
      [second],
    );
  });
});

Deno.test("a signed prekey's private key without its certificate (a save cut short) is removed at open", async () => {
  await withDir(async (dir) => {
    const v = await reopen(dir);
    await v.saveSignedPrekey({
      id: 1,
      pair: await pair(),
      cert: new Uint8Array([1]),
      created: 1,
      expires: 2,
    });
    await Deno.remove(join(mailDir(dir), "spk-1.cert"));
    await Deno.writeTextFile(join(mailDir(dir), "opk-9.pem.ab12.tmp"), "x");
    const v2 = await reopen(dir);
    assert.ok(await gone(join(mailDir(dir), "spk-1.pem")));
    assert.ok(await gone(join(mailDir(dir), "opk-9.pem.ab12.tmp")));
    assert.deepEqual(await v2.signedPrekeys(), []);
    assert.equal(
      await v2.allocateIds("spk", 1),
      2,
      "the id is still not reused",
    );
  });
});

Deno.test("one-time prekeys survive a reopen (0600, non-extractable, same secrets); dropOneTimePrekey() removes the file from disk", async () => {
  await withDir(async (dir) => {
    const v = await reopen(dir);
    const start = await v.allocateIds("opk", 3);
    const keys = [await pair(), await pair(), await pair()];
    await v.saveOneTimePrekeys(
      keys.map((k, i) => ({ id: start + i, pair: k })),
    );
    const v2 = await reopen(dir);
    for (let i = 0; i < 3; i++) {
      const opk = await v2.oneTimePrekey(start + i);
      assert.equal(opk?.id, start + i);
      await assertSameKey(opk!.pair, keys[i]!);
      if (posix) {
        assert.equal(
          await mode(join(mailDir(dir), `opk-${start + i}.pem`)),
          0o600,
        );
      }
    }
    assert.equal(await v2.oneTimePrekey(start + 3), undefined);
    await v2.dropOneTimePrekey(start + 1);
    assert.ok(await gone(join(mailDir(dir), `opk-${start + 1}.pem`)));
    assert.equal(await v2.oneTimePrekey(start + 1), undefined);
    assert.equal(await (await reopen(dir)).oneTimePrekey(start + 1), undefined);
    assert.ok(await (await reopen(dir)).oneTimePrekey(start + 2));
  });
});

Deno.test("allocateIds() counts from 1 per kind and never gives an id twice, across reopens and a lost state file", async () => {
  await withDir(async (dir) => {
    const v = await reopen(dir);
    assert.equal(await v.allocateIds("opk", 100), 1);
    assert.equal(await v.allocateIds("spk", 1), 1);
    assert.equal(await v.allocateIds("opk", 5), 101);
    const v2 = await reopen(dir);
    assert.equal(await v2.allocateIds("opk", 1), 106);
    assert.equal(await v2.allocateIds("spk", 2), 2);
    assert.equal(await (await reopen(dir)).allocateIds("spk", 1), 4);
    // A lost `state`: the ids of the keys held still are not reused.
    await v2.saveOneTimePrekeys([{ id: 106, pair: await pair() }]);
    await Deno.remove(join(mailDir(dir), "state"));
    assert.equal(await (await reopen(dir)).allocateIds("opk", 1), 107);
  });
});

Deno.test("seen ids survive a reopen; records older than 32 days are dropped at open and the file rewritten without them", async () => {
  await withDir(async (dir) => {
    const now = 100 * DAY;
    const v = await reopen(dir, now);
    assert.equal(v.hasSeen(id16(1)), false);
    await v.addSeen(id16(1), now - SEEN_KEEP_MS - 1);
    await v.addSeen(id16(2), now - SEEN_KEEP_MS + 1);
    await v.addSeen(id16(3), now);
    assert.ok(v.hasSeen(id16(1)), "in memory until the next open");
    // Not in the file before sync() (one write per mail-ack): a crash
    // before it loses them, and the message is shown again (9.4).
    assert.equal((await reopen(dir, now)).hasSeen(id16(3)), false);
    await v.sync();
    const v2 = await reopen(dir, now);
    assert.equal(v2.hasSeen(id16(1)), false, "older than 32 days: dropped");
    assert.ok(v2.hasSeen(id16(2)));
    assert.ok(v2.hasSeen(id16(3)));
    assert.equal((await Deno.stat(join(mailDir(dir), "seen"))).size, 48);
    await v2.addSeen(id16(4), now);
    await v2.sync();
    const v3 = await reopen(dir, now);
    assert.ok(v3.hasSeen(id16(4)) && v3.hasSeen(id16(2)));
  });
});

Deno.test("a torn last record of seen (a crash during an append) is cut off at open, and the next record lands whole", async () => {
  await withDir(async (dir) => {
    const now = 100 * DAY;
    const v = await reopen(dir, now);
    await v.addSeen(id16(1), now);
    await v.sync();
    const path = join(mailDir(dir), "seen");
    const f = await Deno.open(path, { append: true });
    await f.write(new Uint8Array(10).fill(9));
    f.close();
    const v2 = await reopen(dir, now);
    assert.ok(v2.hasSeen(id16(1)));
    assert.equal((await Deno.stat(path)).size, 24);
    await v2.addSeen(id16(2), now);
    await v2.sync();
    const v3 = await reopen(dir, now);
    assert.ok(v3.hasSeen(id16(1)) && v3.hasSeen(id16(2)));
    assert.equal((await Deno.stat(path)).size, 48);
  });
});

Deno.test("pending receipts: add, get, drop and expire survive reopens; the recipient is kept beside them", async () => {
  await withDir(async (dir) => {
    const v = await reopen(dir);
    const rk = (n: number) => new Uint8Array(32).fill(n);
    await v.addPending({ msgId: id16(1), rk: rk(1), time: 10, to: "B" });
    await v.addPending({ msgId: id16(2), rk: rk(2), time: 20 });
    await v.addPending({ msgId: id16(3), rk: rk(3), time: 30, to: "C" });
    const v2 = await reopen(dir);
    assert.deepEqual(await v2.pending(id16(1)), {
      msgId: id16(1),
      rk: rk(1),
      time: 10,
      to: "B",
    });
    assert.deepEqual(await v2.pending(id16(2)), {
      msgId: id16(2),
      rk: rk(2),
      time: 20,
    });
    if (posix) assert.equal(await mode(join(mailDir(dir), "pending")), 0o600);
    await v2.dropPending(id16(2));
    assert.equal(await v2.pending(id16(2)), undefined);
    // A drop is written by the next sync (one per mail-ack): before it, a
    // reopen (a crash) still has the entry; after it, never again.
    assert.equal((await (await reopen(dir)).pending(id16(2)))?.time, 20);
    await v2.sync();
    const v3 = await reopen(dir);
    assert.equal(await v3.pending(id16(2)), undefined);
    const expired = await v3.expirePending(15);
    assert.deepEqual(expired.map((p) => [p.msgId, p.to]), [[id16(1), "B"]]);
    assert.deepEqual(await v3.expirePending(15), []);
    const v4 = await reopen(dir);
    assert.equal(await v4.pending(id16(1)), undefined);
    assert.equal((await v4.pending(id16(3)))?.to, "C");
    assert.equal((await Deno.stat(join(mailDir(dir), "pending"))).size, 56);
  });
});

Deno.test("a torn last record of pending is cut off at open; the whole ones stay", async () => {
  await withDir(async (dir) => {
    const v = await reopen(dir);
    await v.addPending({ msgId: id16(1), rk: new Uint8Array(32), time: 1 });
    const path = join(mailDir(dir), "pending");
    const f = await Deno.open(path, { append: true });
    await f.write(new Uint8Array(30));
    f.close();
    const v2 = await reopen(dir);
    assert.equal((await v2.pending(id16(1)))?.time, 1);
    assert.equal((await Deno.stat(path)).size, 56);
  });
});

Deno.test({
  name:
    "openMailVault() refuses a mail folder that group can write (key-dir-writable), and a private key others can read (key-permissions)",
  ignore: !posix,
  fn: async () => {
    await withDir(async (dir) => {
      const v = await reopen(dir);
      await v.saveOneTimePrekeys([{ id: 1, pair: await pair() }]);
      await Deno.chmod(mailDir(dir), 0o770);
      await assert.rejects(
        reopen(dir),
        (e: KeyError) =>
          e.code === "key-dir-writable" && e.message.includes(mailDir(dir)),
      );
      await Deno.chmod(mailDir(dir), 0o700);
      const pem = join(mailDir(dir), "opk-1.pem");
      await Deno.chmod(pem, 0o644);
      await assert.rejects(
        (await reopen(dir)).oneTimePrekey(1),
        (e: KeyError) =>
          e.code === "key-permissions" && e.message.includes(pem),
      );
    });
  },
});

Deno.test("a corrupt state file or private key is a KeyError naming the file", async () => {
  await withDir(async (dir) => {
    const v = await reopen(dir);
    await v.allocateIds("opk", 1);
    await v.saveOneTimePrekeys([{ id: 1, pair: await pair() }]);
    const state = join(mailDir(dir), "state");
    await Deno.writeFile(state, new Uint8Array([1, 0, 0]), { mode: 0o600 });
    await assert.rejects(
      reopen(dir),
      (e: KeyError) => e.code === "mail-corrupt" && e.message.includes(state),
    );
    await Deno.remove(state);
    const pem = join(mailDir(dir), "opk-1.pem");
    await Deno.writeTextFile(pem, "not a key\n", { mode: 0o600 });
    await assert.rejects(
      (await reopen(dir)).oneTimePrekey(1),
      (e: KeyError) => e.code === "bad-pem" && e.message.includes(pem),
    );
  });
});

Deno.test("a peer's certificates and verified fingerprint survive a reopen (0600); forgetPeer() removes both files", async () => {
  await withDir(async (dir) => {
    const v = await reopen(dir);
    assert.equal(await v.peerCerts("B"), undefined);
    assert.equal(await v.verified("B"), undefined);
    await v.savePeerCerts("B", { identityCert: new Uint8Array([1, 2]) });
    assert.deepEqual(await (await reopen(dir)).peerCerts("B"), {
      identityCert: new Uint8Array([1, 2]),
    });
    await v.savePeerCerts("B", {
      identityCert: new Uint8Array([1, 2]),
      signedPrekeyCert: new Uint8Array([3, 4, 5]),
    });
    await v.setVerified("B", "SHA256:abc+/def=");
    const v2 = await reopen(dir);
    assert.deepEqual(await v2.peerCerts("B"), {
      identityCert: new Uint8Array([1, 2]),
      signedPrekeyCert: new Uint8Array([3, 4, 5]),
    });
    assert.equal(await v2.verified("B"), "SHA256:abc+/def=");
    assert.equal(await v2.peerCerts("C"), undefined);
    if (posix) {
      assert.equal(await mode(join(peersDir(dir), "B.mail")), 0o600);
      assert.equal(await mode(join(peersDir(dir), "B.verified")), 0o600);
      assert.equal(await mode(peersDir(dir)), 0o700);
    }
    await v2.forgetPeer("B");
    assert.ok(await gone(join(peersDir(dir), "B.mail")));
    assert.ok(await gone(join(peersDir(dir), "B.verified")));
    const v3 = await reopen(dir);
    assert.equal(await v3.peerCerts("B"), undefined);
    assert.equal(await v3.verified("B"), undefined);
    await v3.forgetPeer("B"); // nothing left to forget: fine
  });
});

Deno.test("peer names follow rule 2.9: a name that could leave the peers folder is refused before any file is touched", async () => {
  await withDir(async (dir) => {
    const v = await reopen(dir);
    await assert.rejects(
      v.savePeerCerts("../x", { identityCert: new Uint8Array([1]) }),
      (e: Error & { code?: string }) => e.code === "bad-username",
    );
    await assert.rejects(
      v.setVerified("B/../../C", "SHA256:x"),
      (e: Error & { code?: string }) => e.code === "bad-username",
    );
    assert.ok(await gone(join(dir, "users")));
    await assert.rejects(
      openMailVault(dir, ".."),
      (e: Error & { code?: string }) => e.code === "bad-username",
    );
  });
});

Deno.test("bad values are refused at the entry: a 15-byte msg_id, an id 0, a fingerprint of two lines", async () => {
  await withDir(async (dir) => {
    const v = await reopen(dir);
    const bad = (e: KeyError) => e.code === "bad-mail-value";
    await assert.rejects(
      async () => await v.addSeen(new Uint8Array(15), 1),
      bad,
    );
    await assert.rejects(async () => await v.oneTimePrekey(0), bad);
    await assert.rejects(async () => await v.allocateIds("opk", 0), bad);
    await assert.rejects(v.setVerified("B", "SHA256:a\nSHA256:b"), bad);
    assert.ok(await gone(join(dir, "users")));
  });
});

Deno.test("ids end at 2^32-1: the last is handed out once, then mail-ids-exhausted, also after a reopen (the stored counter never wraps to 0)", async () => {
  await withDir(async (dir) => {
    const v = await reopen(dir);
    await v.allocateIds("opk", 1); // creates the mail folder and state
    // A state whose next one-time prekey id is the last but one.
    const state = new Uint8Array(9);
    const view = new DataView(state.buffer);
    state[0] = 1;
    view.setUint32(1, 1);
    view.setUint32(5, 0xffff_fffe);
    await Deno.writeFile(join(mailDir(dir), "state"), state, { mode: 0o600 });
    const v2 = await reopen(dir);
    assert.equal(await v2.allocateIds("opk", 1), 0xffff_fffe);
    await assert.rejects(() => v2.allocateIds("opk", 1), {
      code: "mail-ids-exhausted",
    });
    const v3 = await reopen(dir);
    await assert.rejects(() => v3.allocateIds("opk", 1), {
      code: "mail-ids-exhausted",
    });
  });
});

Deno.test("a certificate too large to be read back is refused before anything is written", async () => {
  await withDir(async (dir) => {
    const v = await reopen(dir);
    await assert.rejects(
      () =>
        v.saveIdentity({
          pair: {} as MailKeyPair,
          cert: new Uint8Array(4097),
          created: 1,
        }),
      { code: "bad-mail-value" },
    );
    assert.ok(await gone(mailDir(dir)));
  });
});
