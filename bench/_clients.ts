/**
 * Idle clients of the scale bench in a process of their own (bench/scale.ts
 * spawns a few): one process holding 10,000 {@link ChatClient}s (about 300
 * KiB each, 3 GiB of heap) stalls for seconds in garbage collection, long
 * enough to miss heartbeats, so the clients are spread over processes.
 *
 * It reads one JSON line from stdin ({@link ClientsConfig}), logs the users
 * in, `atOnce` at a time, until all are in or `budgetMs` has passed, and
 * prints `{"online":N,"failed":F,"firstError":"..."}`. Then `quit` on stdin
 * logs them all out, prints `{"bye":true}` and exits.
 *
 * @example
 * ```ts ignore
 * // See spawnClients() in bench/scale.ts.
 * ```
 * @module
 */

import { ChatClient } from "../lib/client/mod.ts";
import type { UiEvent } from "../lib/client/events.ts";
import { loadPrivateIdentity, loadPublicIdentity } from "../lib/crypto/mod.ts";
import { sanitizeText } from "../lib/ui/sanitize.ts";

/** The first stdin line. */
export interface ClientsConfig {
  port: number;
  /** The users' private key (PKCS#8 PEM): every bench user has the same one. */
  userPem: string;
  /** The server's public key (SPKI PEM), pinned. */
  serverPublicPem: string;
  /** Users `u<from>` .. `u<from + count - 1>`. */
  from: number;
  count: number;
  /** Logins under way at once. */
  atOnce: number;
  /** How long each login may take. */
  loginTimeoutMs: number;
  /** Start no login after this long (ms). */
  budgetMs: number;
}

/** What it prints once the logins are done. */
export interface ClientsReport {
  online: number;
  failed: number;
  firstError: string;
}

/**
 * What the clients were told, by error code or system text (numbers
 * masked), printed on stderr at `quit`: a client that left before the
 * measurement shows here with the reason it saw.
 */
const told = new Map<string, number>();
const silentUi = {
  print(ev: UiEvent) {
    const what = ev.kind === "error"
      ? `error ${ev.code}`
      : ev.kind === "system"
      ? `system ${ev.text.replace(/\d+/g, "#")}`
      : undefined;
    // Codes and texts came from the network: sanitised before stderr.
    if (what) {
      const key = sanitizeText(what);
      told.set(key, (told.get(key) ?? 0) + 1);
    }
  },
  setPeer() {},
};

async function* lines(): AsyncGenerator<string> {
  let buf = "";
  for await (
    const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())
  ) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
}

async function main(): Promise<void> {
  const input = lines();
  const first = await input.next();
  if (first.done) return;
  const cfg = JSON.parse(first.value) as ClientsConfig;
  const identity = await loadPrivateIdentity(cfg.userPem, "user key");
  const pinnedServer = await loadPublicIdentity(
    cfg.serverPublicPem,
    "server key",
  );
  const clients: ChatClient[] = [];
  let next = 0, failed = 0, firstError = "";
  const deadline = performance.now() + cfg.budgetMs;
  await Promise.all(Array.from({ length: cfg.atOnce }, async () => {
    while (next < cfg.count && performance.now() < deadline) {
      const user = `u${cfg.from + next++}`;
      try {
        clients.push(
          await ChatClient.start({
            user,
            identity,
            pinnedServer,
            serverHost: "127.0.0.1",
            serverPort: cfg.port,
            ui: silentUi,
            reconnect: false,
            loginTimeoutMs: cfg.loginTimeoutMs,
          }),
        );
      } catch (e) {
        failed++;
        firstError ||= (e as Error).message;
      }
    }
  }));
  const report: ClientsReport = {
    online: clients.length,
    failed,
    firstError,
  };
  console.log(JSON.stringify(report));
  for await (const line of input) {
    if (line.trim() === "quit") break;
  }
  if (told.size > 0) {
    console.error(
      `clients u${cfg.from}..: told: ${
        JSON.stringify(Object.fromEntries(told))
      }`,
    );
  }
  for (let i = 0; i < clients.length; i += 500) {
    await Promise.all(
      clients.slice(i, i + 500).map((c) => c.quit().catch(() => {})),
    );
  }
  console.log(JSON.stringify({ bye: true }));
}

if (import.meta.main) {
  await main();
}
