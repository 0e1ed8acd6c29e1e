/**
 * The server's pool of signing workers (issue 15; `lib/crypto/sign_pool.ts`):
 * its signatures are the protocol's RSA-PSS SHA-256 with a 32-byte salt
 * (PROTOCOL.md section 1) and verify with the server's public key; a new key
 * reaches every worker; a worker stopped in the middle of a job fails that
 * job with one typed error and is replaced; close terminates every worker
 * (the sanitizers see no leak). Then logins end to end: through an
 * `ImServer` with a pool of 2, and through an `Edge` whose worker stops in
 * the middle of a login (that login gets one error, the next one works).
 * @module
 */

import assert from "node:assert/strict";
import { KeyError, type LogFields } from "../lib/util/mod.ts";
import { type PrivateIdentity, verifyPss } from "../lib/crypto/mod.ts";
import {
  defaultSignWorkers,
  SIGN_WORKER_RETRIES,
  SignPool,
  signWorkerScript,
} from "../lib/crypto/mod.ts";
import { loginToServer } from "../lib/client/mod.ts";
import { LoginDecoys } from "../lib/proto/mod.ts";
import { Edge } from "../lib/server/edge.ts";
import { tcpNetwork } from "../lib/wire/mod.ts";
import { clientDirectory, identities } from "./_helpers.ts";
import { withScope } from "./_fixtures.ts";
import { assertRejectsIm, assertThrowsIm } from "./_helpers.ts";

const MSG = new TextEncoder().encode("im v1 sign pool test");

/** Verify with an explicit salt length, to show which one was used. */
async function verifiesWithSalt(
  id: PrivateIdentity,
  sig: Uint8Array<ArrayBuffer>,
  saltLength: number,
): Promise<boolean> {
  const key = await crypto.subtle.importKey(
    "spki",
    id.publicDer,
    { name: "RSA-PSS", hash: "SHA-256" },
    false,
    ["verify"],
  );
  return await crypto.subtle.verify(
    { name: "RSA-PSS", saltLength },
    key,
    sig,
    MSG,
  );
}

Deno.test("SignPool signs RSA-PSS SHA-256 with a 32-byte salt that the public key verifies, on every worker", async () => {
  const { server } = await identities();
  const pool = new SignPool(server.sign, { workers: 2 });
  try {
    assert.equal(pool.size, 2);
    // More jobs than workers, at once: every worker takes some.
    const sigs = await Promise.all(
      Array.from({ length: 8 }, () => pool.sign(MSG)),
    );
    for (const sig of sigs) {
      assert.equal(sig.length, server.bits / 8);
      assert(await verifyPss(server.publicIdentity.verify, sig, MSG));
      assert(await verifiesWithSalt(server, sig, 32));
      assert(!(await verifiesWithSalt(server, sig, 0)));
    }
    // PSS is randomised: two signatures of the same bytes differ.
    assert.notDeepEqual(sigs[0], sigs[1]);
    assert.equal(pool.pending, 0);
  } finally {
    await pool.close();
  }
});

Deno.test("SignPool signatures do not verify for other bytes or another key", async () => {
  const { server, otherServer } = await identities();
  const pool = new SignPool(server.sign, { workers: 1 });
  try {
    const sig = await pool.sign(MSG);
    assert(!(await verifyPss(server.publicIdentity.verify, sig, MSG.slice(1))));
    assert(!(await verifyPss(otherServer.publicIdentity.verify, sig, MSG)));
  } finally {
    await pool.close();
  }
});

Deno.test("SignPool copies the bytes it is given: changing them after sign() does not change what is signed", async () => {
  const { server } = await identities();
  const pool = new SignPool(server.sign, { workers: 1 });
  try {
    const data = MSG.slice();
    const p = pool.sign(data);
    data.fill(0);
    assert(await verifyPss(server.publicIdentity.verify, await p, MSG));
  } finally {
    await pool.close();
  }
});

Deno.test("SignPool.replaceKey reaches every worker: later signatures verify with the new key only", async () => {
  const { server, otherServer } = await identities();
  const pool = new SignPool(server.sign, { workers: 2 });
  try {
    await pool.sign(MSG);
    pool.replaceKey(otherServer.sign);
    const sigs = await Promise.all(
      Array.from({ length: 6 }, () => pool.sign(MSG)),
    );
    for (const sig of sigs) {
      assert(await verifyPss(otherServer.publicIdentity.verify, sig, MSG));
      assert(!(await verifyPss(server.publicIdentity.verify, sig, MSG)));
    }
    // A worker started after the change (in place of a lost one) has the new key.
    pool.terminateWorker(0);
    pool.terminateWorker(1);
    const sig = await pool.sign(MSG);
    assert(await verifyPss(otherServer.publicIdentity.verify, sig, MSG));
  } finally {
    await pool.close();
  }
});

Deno.test("SignPool.replaceKey refuses a key that cannot sign, and keeps the one it had", async () => {
  const { server } = await identities();
  const pool = new SignPool(server.sign, { workers: 1 });
  try {
    assertThrowsIm(
      () => pool.replaceKey(server.publicIdentity.verify),
      KeyError,
      "wrong-key",
    );
    assertThrowsIm(
      () => pool.replaceKey(server.decrypt),
      KeyError,
      "wrong-key",
    );
    const sig = await pool.sign(MSG);
    assert(await verifyPss(server.publicIdentity.verify, sig, MSG));
  } finally {
    await pool.close();
  }
});

Deno.test("SignPool: a worker terminated in the middle of a job fails that job with signer-lost, and the pool goes on with a new worker", async () => {
  const { server } = await identities();
  const log: Array<{ event: string; fields: LogFields }> = [];
  const pool = new SignPool(server.sign, {
    workers: 2,
    log: (event, fields = {}) => log.push({ event, fields }),
  });
  try {
    // Two jobs at once: one on each worker (the fewest pending).
    const first = pool.sign(MSG);
    const second = pool.sign(MSG);
    assert.equal(pool.pending, 2);
    pool.terminateWorker(0);
    await assertRejectsIm(() => first, KeyError, "signer-lost");
    // The other worker's job is untouched.
    assert(await verifyPss(server.publicIdentity.verify, await second, MSG));
    assert.equal(pool.size, 2);
    assert.deepEqual(log.map((l) => l.event), ["sign-worker-lost"]);
    assert.equal(log[0]!.fields.pending, 1);
    // Nothing of the key is in the log line.
    assert.deepEqual(Object.keys(log[0]!.fields).sort(), [
      "pending",
      "replaced",
      "why",
      "worker",
    ]);
    const sigs = await Promise.all(
      Array.from({ length: 4 }, () => pool.sign(MSG)),
    );
    for (const sig of sigs) {
      assert(await verifyPss(server.publicIdentity.verify, sig, MSG));
    }
  } finally {
    await pool.close();
  }
});

Deno.test("SignPool gives up a place whose workers keep failing before they sign, and signs on what is left, then on this thread", async () => {
  const { server } = await identities();
  const log: LogFields[] = [];
  const pool = new SignPool(server.sign, {
    workers: 2,
    log: (_event, fields = {}) => log.push(fields),
  });
  try {
    for (let k = 0; k < SIGN_WORKER_RETRIES; k++) pool.terminateWorker(1);
    assert.equal(pool.size, 1);
    assert.deepEqual(log.map((f) => f.replaced), [true, true, false]);
    assert(
      await verifyPss(server.publicIdentity.verify, await pool.sign(MSG), MSG),
    );
    // Worker 0 signed: its first loss is forgiven, and counted from 1 again.
    pool.terminateWorker(0);
    assert.equal(pool.size, 1);
    for (let k = 1; k < SIGN_WORKER_RETRIES; k++) pool.terminateWorker(0);
    assert.equal(pool.size, 0);
    assert(
      await verifyPss(server.publicIdentity.verify, await pool.sign(MSG), MSG),
    );
  } finally {
    await pool.close();
  }
});

Deno.test("SignPool.close terminates the workers: pending jobs fail with signer-closed, later ones too", async () => {
  const { server } = await identities();
  const pool = new SignPool(server.sign, { workers: 2 });
  const pending = [pool.sign(MSG), pool.sign(MSG), pool.sign(MSG)];
  await pool.close();
  for (const p of pending) {
    await assertRejectsIm(() => p, KeyError, "signer-closed");
  }
  await assertRejectsIm(() => pool.sign(MSG), KeyError, "signer-closed");
  assert.equal(pool.size, 0);
  await pool.close(); // twice is fine
});

Deno.test("SignPool of 0 workers signs on this thread; a bad count or key is refused", async () => {
  const { server } = await identities();
  const pool = new SignPool(server.sign, { workers: 0 });
  assert.equal(pool.size, 0);
  assert(
    await verifyPss(server.publicIdentity.verify, await pool.sign(MSG), MSG),
  );
  await pool.close();
  for (const workers of [-1, 1.5, 1025, NaN]) {
    assertThrowsIm(
      () => new SignPool(server.sign, { workers }),
      KeyError,
      "bad-workers",
    );
  }
  assertThrowsIm(
    () => new SignPool(server.publicIdentity.verify, { workers: 1 }),
    KeyError,
    "wrong-key",
  );
  assert(defaultSignWorkers() >= 1);
});

Deno.test("the sign worker's script uses WebCrypto alone: no import, no Deno API", () => {
  const src = signWorkerScript();
  assert(!/\bimport\b/.test(src));
  assert(!/\bDeno\b/.test(src));
  assert(!/\bfetch\b/.test(src));
  assert(src.includes("crypto.subtle.sign"));
});

Deno.test("a login through an ImServer with 2 sign workers works end to end, several at once", async () => {
  await withScope(async (s) => {
    const { port, log } = await s.server({ signWorkers: 2 });
    const logins = await Promise.all(
      ["A", "B", "C", "A"].map((u) => s.login(port, u)),
    );
    for (const l of logins) assert(l.login.user.length > 0);
    const listening = log.find((l) => l.event === "listening");
    assert.equal(listening?.fields.signWorkers, 2);
    assert(!log.some((l) => l.event === "sign-worker-lost"));
  });
});

Deno.test("a login whose sign worker stops mid-job gets one error; the Edge and the pool go on", async () => {
  const ids = await identities();
  const clients = clientDirectory(ids);
  const decoys = new LoginDecoys(clients.values());
  await decoys.ready();
  const pool = new SignPool(ids.server.sign, { workers: 1 });
  let crash = true;
  const lines: string[] = [];
  const listener = tcpNetwork.listen("127.0.0.1", 0, {});
  const edge = new Edge(listener, {
    identity: ids.server,
    sign: (data) => {
      const p = pool.sign(data);
      // The first login's job is pending on worker 0: stop it now.
      if (crash) pool.terminateWorker(0);
      crash = false;
      return p;
    },
    lookupUser: (name) => clients.get(name),
    decoys,
    loginTimeoutMs: 10_000,
    windowMs: 120_000,
    admission: { maxTotal: 16, maxPerAddress: 16 },
    penalty: { limit: 100, basePenaltyMs: 5_000 },
    log: (event) => lines.push(event),
    onLogin: (_login, t) => {
      t.close();
      return Promise.resolve();
    },
  });
  const opts = {
    user: "A",
    identity: ids.A,
    pinnedServer: ids.serverPinned,
    serverHost: "127.0.0.1",
    serverPort: edge.port,
    ui: { print() {}, setPeer() {} },
    heartbeatMs: 0,
    reconnect: false,
    loginTimeoutMs: 10_000,
  };
  try {
    const e = await loginToServer(opts).then(
      () => assert.fail("the first login should fail"),
      (e) => e,
    );
    assert.equal(e.code, "server-error");
    assert.match(e.message, /signing worker stopped; try again/);
    assert(lines.includes("login-error"));
    const ok = await loginToServer(opts);
    assert.equal(ok.login.user, "A");
    ok.channel.abort("test-end");
    assert.equal(pool.size, 1);
  } finally {
    edge.stop();
    await edge.done();
    await pool.close();
  }
});
