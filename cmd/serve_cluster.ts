/**
 * `im serve --cluster` (PROTOCOL.md 11.1): its flags, each bad value one
 * usage line ({@link clusterFlags}); the NATS password file; joining the
 * cluster, whose NATS client and parts are loaded by a dynamic `import()`
 * only then ({@link joinCluster}); and the cluster key read again on SIGHUP
 * ({@link reloadClusterKey}).
 * @module
 */

import { ImError, KeyError, type Logger, UsageError } from "../lib/util/mod.ts";
import { isValidUsername } from "../lib/proto/mod.ts";
import { clusterKeyId, loadClusterKey } from "../lib/keystore/mod.ts";

/** What `--cluster` and its flags say (PROTOCOL.md 11.1). */
export interface ClusterFlags {
  servers: string[];
  node: string;
  user?: string;
  passFile?: string;
  /** `--nats-nkey-file`: a NATS user nkey seed, instead of a user and password. */
  nkeyFile?: string;
  /** `--cluster-replicas`: JetStream replicas of what the node makes (1..5). */
  replicas: number;
}

/** Most URLs `--cluster` takes. */
const MAX_CLUSTER_URLS = 16;

/**
 * Read `--cluster`, `--node`, `--nats-user`, `--nats-pass-file`,
 * `--nats-nkey-file`, `--cluster-replicas`: each bad value is one usage line.
 * @param v the flags
 * @param random the default node name's hex digits (tests fix them)
 * @returns the cluster's settings, or undefined without `--cluster`
 * @throws {UsageError} `bad-flag`
 */
export function clusterFlags(
  v: {
    cluster?: string | undefined;
    node?: string | undefined;
    "nats-user"?: string | undefined;
    "nats-pass-file"?: string | undefined;
    "nats-nkey-file"?: string | undefined;
    "cluster-replicas"?: string | undefined;
  },
  random: () => string = () =>
    crypto.getRandomValues(new Uint8Array(3)).toHex(),
): ClusterFlags | undefined {
  if (v.cluster === undefined) {
    for (
      const f of [
        "node",
        "nats-user",
        "nats-pass-file",
        "nats-nkey-file",
        "cluster-replicas",
      ] as const
    ) {
      if (v[f] !== undefined) {
        throw new UsageError("bad-flag", `--${f} needs --cluster URL`);
      }
    }
    return undefined;
  }
  const urls = v.cluster.split(",").map((u) => u.trim());
  if (urls.length > MAX_CLUSTER_URLS) {
    throw new UsageError(
      "bad-flag",
      `Invalid --cluster: at most ${MAX_CLUSTER_URLS} URLs`,
    );
  }
  for (const u of urls) {
    const m = /^(nats|tls):\/\/([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$/
      .exec(u);
    if (!m || Number(m[3]) < 1 || Number(m[3]) > 65535) {
      throw new UsageError(
        "bad-flag",
        `Invalid --cluster "${
          u.slice(0, 80)
        }": expected nats://host:port or tls://host:port, comma-separated`,
      );
    }
  }
  if (new Set(urls).size !== urls.length) {
    throw new UsageError("bad-flag", "Invalid --cluster: a URL given twice");
  }
  const node = v.node ?? `n-${random()}`;
  if (!isValidUsername(node)) {
    throw new UsageError(
      "bad-flag",
      `Invalid --node "${
        node.slice(0, 40)
      }": expected 1-32 characters of A-Z a-z 0-9 _ -`,
    );
  }
  const user = v["nats-user"], passFile = v["nats-pass-file"];
  if (user !== undefined && !/^[\x21-\x7e]{1,256}$/.test(user)) {
    throw new UsageError(
      "bad-flag",
      "Invalid --nats-user: expected 1-256 printable characters, no spaces",
    );
  }
  const nkeyFile = v["nats-nkey-file"];
  if (
    nkeyFile !== undefined &&
    (user !== undefined || passFile !== undefined)
  ) {
    throw new UsageError(
      "bad-flag",
      "--nats-nkey-file and --nats-user with --nats-pass-file do not go together: NATS takes one of them",
    );
  }
  if (nkeyFile === "") {
    throw new UsageError(
      "bad-flag",
      'Invalid --nats-nkey-file "": expected a file',
    );
  }
  if ((user === undefined) !== (passFile === undefined)) {
    throw new UsageError(
      "bad-flag",
      "--nats-user and --nats-pass-file go together",
    );
  }
  if (passFile === "") {
    throw new UsageError(
      "bad-flag",
      'Invalid --nats-pass-file "": expected a file',
    );
  }
  const r = v["cluster-replicas"] ?? "1";
  if (!/^[1-5]$/.test(r)) {
    throw new UsageError(
      "bad-flag",
      `Invalid --cluster-replicas "${
        r.slice(0, 40)
      }": expected an integer from 1 to 5`,
    );
  }
  return {
    servers: urls,
    node,
    replicas: Number(r),
    ...(user !== undefined && { user }),
    ...(passFile !== undefined && { passFile }),
    ...(nkeyFile !== undefined && { nkeyFile }),
  };
}

/**
 * The NATS password: the first line of `--nats-pass-file`.
 * @throws {UsageError} `bad-flag`: missing, unreadable or empty
 */
export async function readPassFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound
      ? "no such file"
      : e instanceof Deno.errors.NotCapable ||
          e instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : (e as Error).message;
    throw new UsageError(
      "bad-flag",
      `Cannot read --nats-pass-file "${path}": ${why}`,
    );
  }
  const pass = text.split(/\r?\n/)[0] ?? "";
  if (pass === "") {
    throw new UsageError(
      "bad-flag",
      `Invalid --nats-pass-file "${path}": its first line is empty`,
    );
  }
  return pass;
}

/** What takes a new cluster key: a {@link ClusterNode}'s `replaceKey`. */
export interface KeyHolder {
  /** @returns false when it is the key in use */
  replaceKey(clusterKey: Uint8Array): boolean;
}

/**
 * Read `server/cluster.key` again (PROTOCOL.md 11.1, SIGHUP) and give a
 * changed key to the node: `cluster-key-replaced` with both ids. A file
 * that is missing, too open or not a key keeps the key in use and logs one
 * line, `cluster-key-failed`; it never throws.
 * @param dir the key directory
 * @param node the node that uses the key
 * @param inUse the id of the key in use ({@link clusterKeyId})
 * @param log where the outcome is logged
 * @returns the id of the key in use afterwards
 */
export async function reloadClusterKey(
  dir: string,
  node: KeyHolder,
  inUse: string,
  log: Logger,
): Promise<string> {
  let key: Uint8Array | undefined;
  try {
    key = await loadClusterKey(dir);
    const id = clusterKeyId(key);
    if (!node.replaceKey(key)) return inUse;
    log("cluster-key-replaced", { old: inUse, new: id });
    return id;
  } catch (e) {
    log("cluster-key-failed", {
      error: ((e as Error).message ?? String(e)).split("\n")[0]!,
      kept: inUse,
    });
    return inUse;
  } finally {
    key?.fill(0);
  }
}

/**
 * Errors of the NATS client's socket that reach nobody: `ECONNRESET`, when a
 * NATS server that refused the credentials resets the connection after the
 * client gave up on it; `ERR_STREAM_WRITE_AFTER_END`, when the client
 * answers a NATS server's INFO on a socket that already ended (NATS went
 * away while the client reconnected; it goes on reconnecting). Either is an
 * uncaught error that would end the process, before its one error line or
 * in the middle of serving (a server never dies of a service down). They are
 * dropped while the node runs, and for good once joining failed (the
 * process is ending).
 */
export function dropReset(ev: ErrorEvent): void {
  const code = (ev.error as { code?: unknown } | null)?.code;
  if (code === "ECONNRESET" || code === "ERR_STREAM_WRITE_AFTER_END") {
    ev.preventDefault();
  }
}

/**
 * Join the cluster (PROTOCOL.md 11.1): the NATS client and the cluster's
 * parts are loaded here, by a dynamic import, and only with `--cluster`.
 * @throws {ImError} `cluster-unreachable`: one line naming the URLs and why
 * @throws {KeyError} `bad-nkey-seed`: the seed's checksum or kind is wrong
 */
export async function joinCluster(
  c: ClusterFlags,
  clusterKey: Uint8Array,
  creds: { pass?: string | undefined; nkeySeed?: Uint8Array | undefined },
  log: Logger,
) {
  const { ClusterNode } = await import("../lib/server/nats/mod.ts");
  globalThis.addEventListener("error", dropReset);
  try {
    return await ClusterNode.join({
      servers: c.servers,
      node: c.node,
      clusterKey,
      ...(c.user !== undefined && { user: c.user }),
      ...(creds.pass !== undefined && { pass: creds.pass }),
      ...(creds.nkeySeed !== undefined && { nkeySeed: creds.nkeySeed }),
      replicas: c.replicas,
      log,
    });
  } catch (e) {
    if (e instanceof KeyError && e.code === "bad-nkey-seed") {
      throw new KeyError(
        "bad-nkey-seed",
        `Cannot use NATS nkey seed "${c.nkeyFile}": ${
          e.message.replace(/^NATS nkey seed: /, "")
        }`,
        "copy the seed file again from where it was made (nk -gen user), or make a new nkey user",
      );
    }
    const why = ((e as Error).message ?? String(e)).split("\n")[0];
    throw new ImError(
      "cluster-unreachable",
      `Cannot join the cluster at ${c.servers.join(",")}: ${why}`,
      "check --cluster, the NATS credentials, and that nats-server runs with JetStream (-js)",
    );
  } finally {
    clusterKey.fill(0);
    creds.nkeySeed?.fill(0);
  }
}
