/**
 * Rule 2.4 with mixed key sizes (issue 10 item 3): refusing an unknown name
 * does the same work as refusing a bad signature from an enrolled user,
 * whatever the sizes of the server's and the users' keys. Proved by what
 * the server does, never by a stopwatch: every WebCrypto call a refusal
 * makes is recorded with the modulus size of its key, and the records of
 * the failure paths must be equal.
 */
import assert from "node:assert/strict";
import { AuthError, KeyError, randomBytes } from "../lib/util/mod.ts";
import {
  ClientHandshake,
  type DecoySource,
  encodeClientAuth,
  LoginDecoys,
  ServerHandshake,
} from "../lib/proto/mod.ts";
import {
  DEFAULT_RSA_BITS,
  generateRsaKeyPair,
  loadPrivateIdentity,
  type PrivateIdentity,
  type PublicIdentity,
} from "../lib/crypto/mod.ts";
import {
  assertRejectsIm,
  assertThrowsIm,
  clientDirectory,
  identities,
} from "./_helpers.ts";

// ---------------------------------------------------------------------------
// Fixtures

let big: Promise<PrivateIdentity> | undefined;

/** A 3072-bit identity (the users of `_helpers.ts` have 2048), made once. */
function bigIdentity(): Promise<PrivateIdentity> {
  big ??= generateRsaKeyPair(3072).then((p) =>
    loadPrivateIdentity(p.privatePem, "3072-bit test key")
  );
  return big;
}

const SUBTLE_CALLS = [
  "sign",
  "verify",
  "encrypt",
  "decrypt",
  "digest",
  "deriveBits",
  "deriveKey",
  "importKey",
  "exportKey",
  "generateKey",
] as const;

/** One WebCrypto call: its name, and the algorithm and modulus size of its key. */
function describe(call: string, args: unknown[]): string {
  const key = args.find((a) => a instanceof CryptoKey) as CryptoKey | undefined;
  if (key === undefined) return call;
  const alg = key.algorithm as Partial<RsaHashedKeyAlgorithm>;
  return `${call} ${alg.name} ${alg.modulusLength ?? ""}`.trimEnd();
}

/** Run `fn` and list every WebCrypto call it makes, in order. */
async function webCryptoCalls(fn: () => Promise<unknown>): Promise<string[]> {
  const subtle = crypto.subtle as unknown as Record<
    string,
    (...args: unknown[]) => unknown
  >;
  const originals = new Map(SUBTLE_CALLS.map((c) => [c, subtle[c]!]));
  const calls: string[] = [];
  for (const [name, original] of originals) {
    subtle[name] = function (this: SubtleCrypto, ...args: unknown[]) {
      calls.push(describe(name, args));
      return original.apply(this, args);
    };
  }
  try {
    await fn();
  } finally {
    for (const [name, original] of originals) subtle[name] = original;
  }
  return calls;
}

interface Server {
  identity: PrivateIdentity;
  directory: Map<string, PublicIdentity>;
  decoy: DecoySource | PublicIdentity;
}

/**
 * A login of `user`, signed by `signer`, up to the server's CLIENT_AUTH.
 * @returns the server's handshake and the CLIENT_AUTH to feed it
 */
async function upToClientAuth(
  server: Server,
  user: string,
  signer: PrivateIdentity,
) {
  const hs = new ServerHandshake({
    identity: server.identity,
    lookupUser: (name) => server.directory.get(name),
    decoy: server.decoy,
  });
  const client = new ClientHandshake({
    user,
    identity: signer,
    pinnedServer: server.identity.publicIdentity,
  });
  const serverHello = await hs.onClientHello(await client.start());
  const auth = await client.onServerHello(serverHello);
  return { hs, auth };
}

/** The refusal of one CLIENT_AUTH, and every WebCrypto call it made. */
async function refusal(
  hs: ServerHandshake,
  auth: Uint8Array,
): Promise<{ calls: string[]; error: AuthError }> {
  let error: AuthError | undefined;
  const calls = await webCryptoCalls(async () => {
    error = await assertRejectsIm(
      () => hs.onClientAuth(auth),
      AuthError,
      "login-failed",
    );
  });
  return { calls, error: error! };
}

/** A CLIENT_AUTH whose signature is random bytes of `bytes` bytes. */
function garbage(bytes: number): Uint8Array {
  return encodeClientAuth({ signature: randomBytes(bytes) });
}

// ---------------------------------------------------------------------------
// The server's key has another size than the users'

Deno.test("a 3072-bit server checks an unknown user's signature against a 2048-bit decoy, the size of its users' keys, never against its own key (issue 10 item 3)", async () => {
  const ids = await identities();
  const serverId = await bigIdentity();
  const directory = clientDirectory(ids);
  const decoys = new LoginDecoys(directory.values());
  await decoys.ready();
  const server = { identity: serverId, directory, decoy: decoys };

  const unknown = await upToClientAuth(server, "Zed", ids.stranger);
  const { calls } = await refusal(unknown.hs, unknown.auth);
  assert.deepEqual(calls, ["verify RSA-PSS 2048"]);
  assert.equal((await decoys.decoyFor("Zed")).bits, 2048);
  assert.notEqual(
    (await decoys.decoyFor("Zed")).fingerprint,
    serverId.fingerprint,
  );
});

Deno.test("every refusal of a 3072-bit server with 2048-bit users makes the same WebCrypto calls in the same order and gives the same error: unknown name, garbage signature, another user's key, a stranger's key", async () => {
  const ids = await identities();
  const serverId = await bigIdentity();
  const directory = clientDirectory(ids);
  const decoys = new LoginDecoys(directory.values());
  await decoys.ready();
  const server = { identity: serverId, directory, decoy: decoys };

  const cases: Array<[string, string, PrivateIdentity, Uint8Array?]> = [
    ["unknown name, a stranger's signature", "Zed", ids.stranger],
    ["unknown name, garbage of 256 bytes", "Zed", ids.stranger, garbage(256)],
    ["unknown name, garbage of 384 bytes", "Zed", ids.stranger, garbage(384)],
    ["unknown name, an enrolled user's signature", "Yann", ids.A],
    ["A, B's signature", "A", ids.B],
    ["A, a stranger's signature", "A", ids.stranger],
    ["A, garbage of 256 bytes", "A", ids.A, garbage(256)],
    ["A, garbage of 384 bytes", "A", ids.A, garbage(384)],
    ["C, the server's signature", "C", serverId],
  ];
  const seen: Array<{ what: string; calls: string[]; error: AuthError }> = [];
  for (const [what, user, signer, auth] of cases) {
    const p = await upToClientAuth(server, user, signer);
    seen.push({ what, ...(await refusal(p.hs, auth ?? p.auth)) });
  }
  for (const s of seen) {
    assert.deepEqual(s.calls, ["verify RSA-PSS 2048"], s.what);
    assert.equal(s.error.message, seen[0]!.error.message, s.what);
    assert.equal(s.error.hint, seen[0]!.error.hint, s.what);
  }
});

// ---------------------------------------------------------------------------
// Users with keys of several sizes

Deno.test("with users of 2048 and 3072 bits, unknown names are refused with a verification of 2048 or 3072 bits, each name the same size on every probe, and the users with their own keys", async () => {
  const ids = await identities();
  const d = await bigIdentity();
  const directory = clientDirectory(ids, { D: d });
  const decoys = new LoginDecoys(directory.values());
  assert.deepEqual(decoys.sizes, [2048, 3072]);
  await decoys.ready();
  const server = { identity: ids.server, directory, decoy: decoys };

  // Three names of each size, the first found.
  const probes: Array<[string, number]> = [];
  for (let i = 0; probes.length < 6 && i < 1000; i++) {
    const name = `probe_${i}`, bits = decoys.sizeFor(name);
    if (probes.filter(([, b]) => b === bits).length < 3) {
      probes.push([name, bits]);
    }
  }
  assert.equal(probes.length, 6, "names of both sizes exist");
  for (const [name, bits] of probes) {
    for (let probe = 0; probe < 2; probe++) {
      const p = await upToClientAuth(server, name, ids.stranger);
      const { calls } = await refusal(p.hs, p.auth);
      assert.deepEqual(calls, [`verify RSA-PSS ${bits}`], `${name} #${probe}`);
    }
  }
  // The enrolled users are checked with their own keys.
  for (const [user, bits] of [["A", 2048], ["D", 3072]] as const) {
    const p = await upToClientAuth(server, user, ids.stranger);
    const { calls } = await refusal(p.hs, p.auth);
    assert.deepEqual(calls, [`verify RSA-PSS ${bits}`], user);
  }
});

Deno.test("the server asks for the decoy on every CLIENT_AUTH, enrolled user or not, a successful login included, so both paths await the same things", async () => {
  const ids = await identities();
  const directory = clientDirectory(ids);
  const real = new LoginDecoys(directory.values());
  const asked: string[] = [];
  const decoy: DecoySource = {
    decoyFor: (user) => {
      asked.push(user);
      return real.decoyFor(user);
    },
  };
  const server = { identity: ids.server, directory, decoy };

  const unknown = await upToClientAuth(server, "Zed", ids.stranger);
  await refusal(unknown.hs, unknown.auth);
  const bad = await upToClientAuth(server, "A", ids.stranger);
  await refusal(bad.hs, bad.auth);
  const good = await upToClientAuth(server, "B", ids.B);
  const replies = await good.hs.onClientAuth(good.auth);
  assert.equal(replies.length, 2, "B is let in");
  assert.deepEqual(asked, ["Zed", "A", "B"]);
});

// ---------------------------------------------------------------------------
// LoginDecoys

Deno.test("LoginDecoys gives names the enrolled sizes in the enrolled proportions, the same size to the same name", () => {
  const decoys = new LoginDecoys([
    { bits: 2048 },
    { bits: 2048 },
    { bits: 2048 },
    { bits: 3072 },
  ]);
  const names = Array.from({ length: 4000 }, (_, i) => `user_${i}`);
  let large = 0;
  for (const name of names) {
    const bits = decoys.sizeFor(name);
    assert.ok(bits === 2048 || bits === 3072, `${name}: ${bits}`);
    assert.equal(decoys.sizeFor(name), bits, `${name} again`);
    if (bits === 3072) large++;
  }
  // 1 in 4 expected; 0.2 and 0.3 are more than 7 standard deviations away.
  assert.ok(large > 800 && large < 1200, `${large} of 4000 got 3072 bits`);
});

Deno.test("LoginDecoys of two servers choose sizes by their own secrets: from outside, a name's size cannot be computed", () => {
  const enrolled = [{ bits: 2048 }, { bits: 3072 }];
  const a = new LoginDecoys(enrolled), b = new LoginDecoys(enrolled);
  const names = Array.from({ length: 64 }, (_, i) => `name${i}`);
  assert.ok(
    names.some((n) => a.sizeFor(n) !== b.sizeFor(n)),
    "64 names mapped alike by two secrets",
  );
});

Deno.test("LoginDecoys with nobody enrolled uses the size keygen gives, and follows update() to the sizes of a new directory", () => {
  const decoys = new LoginDecoys();
  assert.deepEqual(decoys.sizes, [DEFAULT_RSA_BITS]);
  assert.equal(decoys.sizeFor("anyone"), DEFAULT_RSA_BITS);
  decoys.update([{ bits: 4096 }, { bits: 2048 }, { bits: 4096 }]);
  assert.deepEqual(decoys.sizes, [2048, 4096]);
  decoys.update([{ bits: 2048 }]);
  assert.deepEqual(decoys.sizes, [2048]);
  assert.equal(decoys.sizeFor("anyone"), 2048);
});

Deno.test("LoginDecoys refuses a key size outside 2048..4096", () => {
  for (const bits of [1024, 2047, 4097, 3072.5, Number.NaN]) {
    assertThrowsIm(
      () => new LoginDecoys([{ bits }]),
      KeyError,
      "bad-bits",
      `${bits}`,
    );
  }
});

Deno.test("LoginDecoys hands every name of one size the same cached decoy, which has that size and is not a user's key", async () => {
  const ids = await identities();
  const directory = clientDirectory(ids);
  const decoys = new LoginDecoys(directory.values());
  const [x, y] = await Promise.all([
    decoys.decoyFor("Zed"),
    decoys.decoyFor("Yann"),
  ]);
  assert.equal(x, y);
  assert.equal(x.bits, 2048);
  for (const key of directory.values()) {
    assert.notEqual(x.fingerprint, key.fingerprint);
  }
  assert.equal(await new LoginDecoys(directory.values()).decoyFor("Zed"), x);
});
