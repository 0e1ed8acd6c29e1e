/**
 * {@link MemoryMailVault}: the mailbox vault of a client without a key
 * directory keeps what the {@link MailVault} contract says (ids never
 * reused, prekeys by id and oldest first, seen ids, pending receipts and
 * their expiry, peers' certificates and verified marks).
 * @module
 */

import assert from "node:assert/strict";
import { generateX25519 } from "../lib/crypto/mod.ts";
import { MemoryMailVault } from "../lib/client/mod.ts";

Deno.test("MemoryMailVault allocates ids per kind from 1, consecutive, never reused", async () => {
  const v = new MemoryMailVault();
  assert.equal(await v.allocateIds("opk", 100), 1);
  assert.equal(await v.allocateIds("opk", 3), 101);
  assert.equal(await v.allocateIds("spk", 1), 1);
  assert.equal(await v.allocateIds("spk", 1), 2);
  assert.equal(await v.allocateIds("opk", 1), 104);
  await assert.rejects(v.allocateIds("opk", 0), RangeError);
  await assert.rejects(v.allocateIds("opk", 1.5), RangeError);
});

Deno.test("MemoryMailVault keeps signed prekeys oldest first, drops by id, and one-time prekeys until dropped", async () => {
  const v = new MemoryMailVault();
  const pair = await generateX25519(true);
  const spk = (id: number) => ({
    id,
    pair,
    cert: new Uint8Array([id]),
    created: id,
    expires: id + 10,
  });
  await v.saveSignedPrekey(spk(2));
  await v.saveSignedPrekey(spk(1));
  await v.saveSignedPrekey(spk(3));
  assert.deepEqual((await v.signedPrekeys()).map((k) => k.id), [1, 2, 3]);
  await v.dropSignedPrekey(2);
  assert.deepEqual((await v.signedPrekeys()).map((k) => k.id), [1, 3]);
  await v.saveOneTimePrekeys([{ id: 5, pair }, { id: 6, pair }]);
  assert.equal((await v.oneTimePrekey(5))?.id, 5);
  await v.dropOneTimePrekey(5);
  assert.equal(await v.oneTimePrekey(5), undefined);
  assert.equal((await v.oneTimePrekey(6))?.id, 6);
  assert.equal(await v.oneTimePrekey(7), undefined);
  assert.equal(await v.identity(), undefined);
  await v.saveIdentity({ pair, cert: new Uint8Array(1), created: 9 });
  assert.equal((await v.identity())?.created, 9);
});

Deno.test("MemoryMailVault remembers seen ids by value", async () => {
  const v = new MemoryMailVault();
  const id = new Uint8Array(16).fill(3);
  assert.equal(v.hasSeen(id), false);
  await v.addSeen(id, 1);
  assert.equal(v.hasSeen(new Uint8Array(16).fill(3)), true);
  assert.equal(v.hasSeen(new Uint8Array(16).fill(4)), false);
});

Deno.test("MemoryMailVault keeps pending receipts as copies, drops them, and expires the old ones", async () => {
  const v = new MemoryMailVault();
  const a = new Uint8Array(16).fill(1), b = new Uint8Array(16).fill(2);
  const rk = new Uint8Array(32).fill(9);
  await v.addPending({ msgId: a, rk, time: 100, to: "B" });
  await v.addPending({ msgId: b, rk, time: 200 });
  rk.fill(0); // the caller's copy; the vault's stays
  assert.deepEqual((await v.pending(a))?.rk, new Uint8Array(32).fill(9));
  assert.equal((await v.pending(a))?.to, "B");
  const gone = await v.expirePending(150);
  assert.deepEqual(gone.map((p) => p.time), [100]);
  assert.equal(await v.pending(a), undefined);
  assert.equal((await v.pending(b))?.time, 200);
  await v.dropPending(b);
  assert.equal(await v.pending(b), undefined);
  assert.deepEqual(await v.expirePending(Infinity), []);
});

Deno.test("MemoryMailVault forgets a peer's certificates and its verified mark together", async () => {
  const v = new MemoryMailVault();
  await v.savePeerCerts("B", { identityCert: new Uint8Array([1]) });
  await v.setVerified("B", "SHA256:x");
  assert.deepEqual((await v.peerCerts("B"))?.identityCert, new Uint8Array([1]));
  assert.equal(await v.verified("B"), "SHA256:x");
  assert.equal(await v.verified("C"), undefined);
  await v.forgetPeer("B");
  assert.equal(await v.peerCerts("B"), undefined);
  assert.equal(await v.verified("B"), undefined);
});
