/**
 * Provisioning the key directory (layout in `layout.ts`): key pairs for the
 * server and the users, each user's public key enrolled in the server's
 * directory, and the server key pinned for each user (PROTOCOL.md section 3,
 * "Login": the pin is what rule 2.2 checks). On one machine
 * ({@link provision}) or on two ({@link provisionPublicOnly} on the user's,
 * {@link enroll} on the server's, {@link pinServerKey} back on the user's).
 *
 * A key is never overwritten unless the caller asks for it (`force`); a
 * conflict is a {@link KeyStoreError} whose `fix` says what would resolve it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { loadServerKeys, loadUserKeys } from "./load.ts";
 * import { provision } from "./provision.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   await provision(dir, { users: ["A"], bits: 2048 });
 *   const server = await loadServerKeys(dir);
 *   const a = await loadUserKeys(dir, "A");
 *   assert.equal(a.pinnedServer.fingerprint, server.identity.fingerprint);
 *   assert.equal(server.clients.get("A")?.fingerprint, a.identity.fingerprint);
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 * @module
 */

import { allSettledOrThrow } from "../util/mod.ts";
import {
  checkRsaBits,
  DEFAULT_RSA_BITS,
  generateRsaKeyPair,
  loadPrivateIdentity,
  loadPublicIdentity,
  pemEncode,
} from "../crypto/mod.ts";
import { checkUsername, isValidUsername } from "../proto/mod.ts";
import {
  ensureDir,
  exists,
  fsFix,
  fsReason,
  readKeyFile,
  writeKeyFile,
} from "./_files.ts";
import { type KeyFix, KeyStoreError } from "./keystore_error.ts";
import {
  DEFAULT_USERS,
  KEY_LAYOUT as L,
  keyPath,
  PRIVATE_KEY_MODE,
  PUBLIC_KEY_MODE,
} from "./layout.ts";

/**
 * What provisioning did to one file: a key pair `created` where there was
 * none, `replaced` where there was one (with `force` or `forceServer`), or
 * `kept`; a public key `enrolled` or `pinned` (or `kept`).
 */
export type ProvisionAction =
  | "created"
  | "replaced"
  | "kept"
  | "enrolled"
  | "pinned";

/** One line of a {@link ProvisionReport}. */
export interface ProvisionEntry {
  /** Path relative to the key directory, `/`-separated, e.g. `users/A/private.pem`. */
  readonly path: string;
  /** Fingerprint of the key in that file (`SHA256:...`). */
  readonly fingerprint: string;
  /** What was done. */
  readonly action: ProvisionAction;
}

/** What provisioning did, file by file, in a stable order. */
export interface ProvisionReport {
  /** The key directory. */
  readonly dir: string;
  /** One entry per key file touched or checked. */
  readonly entries: ProvisionEntry[];
}

/** Options of {@link provision}. */
export interface ProvisionOptions {
  /** Users to provision (default {@link DEFAULT_USERS}); `[]` makes only the server key. */
  readonly users?: readonly string[];
  /** RSA size of keys created now (default 3072). */
  readonly bits?: number;
  /**
   * Replace the listed users' key pairs, and any enrollment or pin of theirs
   * that differs. Without it an existing key is kept and a conflict is an error.
   */
  readonly force?: boolean;
  /**
   * Replace the server key pair too; every local user that had pinned the
   * old key is re-pinned. Kept separate from `force` so that replacing one
   * user's key cannot lock every other user out.
   */
  readonly forceServer?: boolean;
}

/** What {@link enroll} did, and what the user must pin. */
export interface EnrollResult {
  /** The server key (created or kept) and the enrollment. */
  readonly entries: ProvisionEntry[];
  /** Full path of the server public key to hand to the user. */
  readonly serverPublicPath: string;
  /** Its fingerprint, for the user to compare out of band. */
  readonly serverFingerprint: string;
}

// ---------------------------------------------------------------------------
// Provisioning steps

interface PairState {
  entries: ProvisionEntry[];
  publicPem: string;
  fingerprint: string;
  /** True when a new key pair was written now (created or replaced). */
  created: boolean;
}

/**
 * Create a key pair unless one exists (or `force`: then it is `replaced`);
 * check that an existing pair matches.
 */
async function ensurePair(
  dir: string,
  privRel: string,
  pubRel: string,
  bits: number,
  force: boolean,
): Promise<PairState> {
  // The server's pair is replaced on its own terms (forceServer).
  const server = privRel === L.serverPrivate;
  const privPath = keyPath(dir, privRel);
  const pubPath = keyPath(dir, pubRel);
  const [hasPriv, hasPub] = await allSettledOrThrow([
    exists(privPath),
    exists(pubPath),
  ]);
  if (hasPriv && !force) {
    const id = await loadPrivateIdentity(
      await readKeyFile(privPath, "private"),
      `private key "${privPath}"`,
    );
    const entries: ProvisionEntry[] = [
      { path: privRel, fingerprint: id.fingerprint, action: "kept" },
    ];
    const publicPem = pemEncode("PUBLIC KEY", id.publicDer);
    if (hasPub) {
      const pub = await loadPublicIdentity(
        await readKeyFile(pubPath, "public"),
        `public key "${pubPath}"`,
      );
      if (pub.fingerprint !== id.fingerprint) {
        throw new KeyStoreError(
          "key-mismatch",
          `Public key "${pubPath}" (${pub.fingerprint}) does not match private key "${privPath}" (${id.fingerprint})`,
          pubPath,
          { kind: "replace-pair", publicPath: pubPath, server },
        );
      }
    } else {
      await writeKeyFile(pubPath, publicPem, PUBLIC_KEY_MODE);
      entries.push({
        path: pubRel,
        fingerprint: id.fingerprint,
        action: "created",
      });
    }
    return { entries, publicPem, fingerprint: id.fingerprint, created: false };
  }
  if (hasPub && !force) {
    throw new KeyStoreError(
      "key-orphan",
      `Found public key "${pubPath}" without its private key "${privPath}"`,
      pubPath,
      { kind: "remake-pair", publicPath: pubPath, server },
    );
  }
  const pair = await generateRsaKeyPair(bits);
  const pub = await loadPublicIdentity(pair.publicPem);
  await writeKeyFile(privPath, pair.privatePem, PRIVATE_KEY_MODE);
  await writeKeyFile(pubPath, pair.publicPem, PUBLIC_KEY_MODE);
  return {
    entries: [{
      path: privRel,
      fingerprint: pub.fingerprint,
      action: hasPriv ? "replaced" : "created",
    }],
    publicPem: pair.publicPem,
    fingerprint: pub.fingerprint,
    created: true,
  };
}

/**
 * Make `rel` hold the trusted public key `publicPem` (an enrollment or a pin).
 * A different key already there is replaced only with `force`.
 */
async function ensureTrusted(
  dir: string,
  rel: string,
  publicPem: string,
  fingerprint: string,
  force: boolean,
  action: "enrolled" | "pinned",
  conflictFix: KeyFix | undefined,
): Promise<ProvisionEntry> {
  const path = keyPath(dir, rel);
  if (await exists(path)) {
    let current: string;
    try {
      current = (await loadPublicIdentity(
        await readKeyFile(path, "trusted"),
        `public key "${path}"`,
      )).fingerprint;
    } catch (e) {
      if (!force) throw e;
      current = "";
    }
    if (current === fingerprint) {
      return { path: rel, fingerprint, action: "kept" };
    }
    if (!force) {
      throw new KeyStoreError(
        "key-mismatch",
        `"${path}" holds a different key (${current}) than the one given (${fingerprint})`,
        path,
        conflictFix,
      );
    }
  }
  await writeKeyFile(path, publicPem, PUBLIC_KEY_MODE);
  return { path: rel, fingerprint, action };
}

/** Read, validate and canonicalise a public key file handed to us. */
async function readGivenPublicKey(
  path: string,
): Promise<{ pem: string; fingerprint: string }> {
  const text = await readKeyFile(path, "public", { kind: "give-public-key" });
  const id = await loadPublicIdentity(text, `public key "${path}"`);
  return {
    pem: pemEncode("PUBLIC KEY", id.publicDer),
    fingerprint: id.fingerprint,
  };
}

function uniqueUsers(users: readonly string[]): string[] {
  const seen = new Set<string>();
  for (const u of users) seen.add(checkUsername(u));
  return [...seen];
}

// ---------------------------------------------------------------------------
// Public operations

/**
 * Provision a deployment in one directory: the server key pair if missing,
 * each listed user's key pair if missing, each user's public key enrolled in
 * `server/clients/`, and the server key pinned in each `users/<user>/server.pem`.
 * Existing keys are kept (`kept`), so adding a user leaves everyone else's
 * files byte-identical. When the server key is created or replaced, every
 * other local user who had pinned an older server key is re-pinned. A key
 * pair written over an existing one is reported `replaced`. New keys are
 * generated in parallel.
 * @param dir the key directory (created, 0700, if missing)
 * @param options users, bits, force, forceServer
 * @returns one entry per key file, server first, then users in order
 * @throws {AuthError} `bad-username` before anything is written
 * @throws {KeyError} `bad-bits` before anything is written; `key-dir-writable` (an existing directory group or others can write) before anything is written; unreadable, malformed or conflicting existing files; unwritable directory
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { provision } from "./provision.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   const first = await provision(dir, { users: ["A"], bits: 2048 });
 *   assert.deepEqual(first.entries.map((e) => e.action), ["created", "created", "enrolled", "pinned"]);
 *   const again = await provision(dir, { users: ["A"], bits: 2048 });
 *   assert.ok(again.entries.every((e) => e.action === "kept"));
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function provision(
  dir: string,
  options: ProvisionOptions = {},
): Promise<ProvisionReport> {
  const users = uniqueUsers(options.users ?? DEFAULT_USERS);
  const bits = checkRsaBits(options.bits ?? DEFAULT_RSA_BITS);
  const force = options.force ?? false;
  const forceServer = options.forceServer ?? false;

  await ensureDir(dir);
  for (const rel of [L.serverDir, L.clientsDir, L.usersDir]) {
    await ensureDir(keyPath(dir, rel));
  }
  for (const u of users) await ensureDir(keyPath(dir, L.userDir(u)));

  const [server, ...pairs] = await allSettledOrThrow([
    ensurePair(dir, L.serverPrivate, L.serverPublic, bits, forceServer),
    ...users.map((u) =>
      ensurePair(dir, L.userPrivate(u), L.userPublic(u), bits, force)
    ),
  ]);
  const entries: ProvisionEntry[] = [...server!.entries];
  for (const [i, u] of users.entries()) {
    const pair = pairs[i]!;
    entries.push(...pair.entries);
    entries.push(
      await ensureTrusted(
        dir,
        L.client(u),
        pair.publicPem,
        pair.fingerprint,
        force || pair.created,
        "enrolled",
        { kind: "replace-enrolled", user: u },
      ),
    );
    entries.push(
      await ensureTrusted(
        dir,
        L.userServer(u),
        server!.publicPem,
        server!.fingerprint,
        force || server!.created,
        "pinned",
        { kind: "repin-current", user: u },
      ),
    );
  }
  if (server!.created) {
    entries.push(...await repinOthers(dir, users, server!));
  }
  return { dir, entries };
}

/** After a new server key: re-pin local users outside `done` who had pinned an old one. */
async function repinOthers(
  dir: string,
  done: readonly string[],
  server: PairState,
): Promise<ProvisionEntry[]> {
  const out: ProvisionEntry[] = [];
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(keyPath(dir, L.usersDir))) {
      if (e.isDirectory && isValidUsername(e.name) && !done.includes(e.name)) {
        names.push(e.name);
      }
    }
  } catch (e) {
    const path = keyPath(dir, L.usersDir);
    throw new KeyStoreError(
      "key-unreadable",
      `Cannot list "${path}": ${fsReason(e)}`,
      path,
      fsFix(e, { kind: "dir-permissions" }),
    );
  }
  names.sort();
  for (const u of names) {
    if (await exists(keyPath(dir, L.userServer(u)))) {
      out.push(
        await ensureTrusted(
          dir,
          L.userServer(u),
          server.publicPem,
          server.fingerprint,
          true,
          "pinned",
          undefined,
        ),
      );
    }
  }
  return out;
}

/**
 * On a user's own machine: create only `users/<user>/private.pem` and
 * `public.pem`. The public key then goes to the server operator ({@link enroll}).
 * @param dir the key directory
 * @param user the username (rule 2.9)
 * @param bits RSA size of a new key (default 3072)
 * @param force replace an existing key pair
 * @returns the entries for the key pair (`created`, `replaced` or `kept`)
 * @throws {AuthError} `bad-username`
 * @throws {KeyError} `bad-bits`; `key-dir-writable` before anything is written; existing files unreadable or mismatched; directory unwritable
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { provisionPublicOnly } from "./provision.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   const r = await provisionPublicOnly(dir, "G", 2048);
 *   assert.equal(r.entries[0]?.path, "users/G/private.pem");
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function provisionPublicOnly(
  dir: string,
  user: string,
  bits: number = DEFAULT_RSA_BITS,
  force = false,
): Promise<ProvisionReport> {
  checkUsername(user);
  checkRsaBits(bits);
  await ensureDir(dir);
  await ensureDir(keyPath(dir, L.usersDir));
  await ensureDir(keyPath(dir, L.userDir(user)));
  const pair = await ensurePair(
    dir,
    L.userPrivate(user),
    L.userPublic(user),
    bits,
    force,
  );
  return { dir, entries: pair.entries };
}

/**
 * On the server: enroll a user's public key in `server/clients/<user>.pem`
 * (a canonical copy, after validation). The server key pair is created if
 * missing. A different key already enrolled for the user is replaced only
 * with `force`.
 * @param dir the key directory
 * @param user the username (rule 2.9)
 * @param publicPemPath the user's `public.pem`
 * @param options `force` to replace a different enrolled key; `bits` for a new server key
 * @returns the entries, and the server public key the user must pin
 * @throws {AuthError} `bad-username`
 * @throws {KeyError} `bad-bits`; `key-dir-writable` before anything is written; unreadable or malformed key file, conflicting enrollment
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { enroll, provisionPublicOnly } from "./provision.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   await provisionPublicOnly(dir, "G", 2048);
 *   const r = await enroll(dir, "G", `${dir}/users/G/public.pem`, { bits: 2048 });
 *   assert.ok(r.entries.some((e) => e.path === "server/clients/G.pem" && e.action === "enrolled"));
 *   assert.match(r.serverFingerprint, /^SHA256:/);
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function enroll(
  dir: string,
  user: string,
  publicPemPath: string,
  options: { readonly force?: boolean; readonly bits?: number } = {},
): Promise<EnrollResult> {
  checkUsername(user);
  const bits = checkRsaBits(options.bits ?? DEFAULT_RSA_BITS);
  const given = await readGivenPublicKey(publicPemPath);
  await ensureDir(dir);
  await ensureDir(keyPath(dir, L.serverDir));
  await ensureDir(keyPath(dir, L.clientsDir));
  const server = await ensurePair(
    dir,
    L.serverPrivate,
    L.serverPublic,
    bits,
    false,
  );
  const entry = await ensureTrusted(
    dir,
    L.client(user),
    given.pem,
    given.fingerprint,
    options.force ?? false,
    "enrolled",
    { kind: "replace-enrolled", user },
  );
  return {
    entries: [...server.entries, entry],
    serverPublicPath: keyPath(dir, L.serverPublic),
    serverFingerprint: server.fingerprint,
  };
}

/**
 * On a user's machine: pin the server public key (a canonical copy, after
 * validation) in `users/<user>/server.pem`. A different pinned key is
 * replaced only with `force`.
 * @param dir the key directory
 * @param user the username (rule 2.9)
 * @param serverPemPath the server's `public.pem`, as received from its operator
 * @param force replace a different pinned key
 * @returns the entry (`pinned` or `kept`)
 * @throws {AuthError} `bad-username`
 * @throws {KeyError} `key-dir-writable` before anything is written; unreadable or malformed key file, a different key already pinned
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { pinServerKey, provision } from "./provision.ts";
 * const dir = await Deno.makeTempDir();
 * try {
 *   await provision(dir, { users: [], bits: 2048 });
 *   const e = await pinServerKey(dir, "G", `${dir}/server/public.pem`);
 *   assert.equal(e.action, "pinned");
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function pinServerKey(
  dir: string,
  user: string,
  serverPemPath: string,
  force = false,
): Promise<ProvisionEntry> {
  checkUsername(user);
  const given = await readGivenPublicKey(serverPemPath);
  await ensureDir(dir);
  await ensureDir(keyPath(dir, L.usersDir));
  await ensureDir(keyPath(dir, L.userDir(user)));
  return await ensureTrusted(
    dir,
    L.userServer(user),
    given.pem,
    given.fingerprint,
    force,
    "pinned",
    { kind: "repin-given" },
  );
}
