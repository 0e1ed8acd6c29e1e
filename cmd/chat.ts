/**
 * `im chat`: flags -> {@link ChatClient} with a {@link Terminal}.
 * @module
 */

import {
  DEFAULT_HEARTBEAT_MS,
  MAX_HEARTBEAT_MS,
  MIN_HEARTBEAT_MS,
} from "../lib/record/mod.ts";
import { flagValue, hostPort, intFlag, parseFlags } from "./flags.ts";
import {
  ChatClient,
  type ServerAddress,
  traceStart,
  type UiEvent,
} from "../lib/client/mod.ts";
import {
  allSettledOrThrow,
  isImError,
  UsageError,
  within,
} from "../lib/util/mod.ts";
import {
  defaultKeyDir,
  listUsers,
  loadUserKeys,
  openMailVault,
  openRoomVault,
  peerPinStore,
} from "../lib/keystore/mod.ts";
import {
  ask,
  createTerminal,
  denoStdin,
  denoStdout,
  eventToJson,
  guardTerminal,
  sanitizeText,
  shouldUseColor,
  signalExitCode,
} from "../lib/ui/mod.ts";
import { checkUsername, isValidUsername } from "../lib/proto/mod.ts";

traceStart("modules loaded");

/** `im chat --help`. */
export const CHAT_USAGE = `Usage: im chat [--user NAME] [options]

Log in to an im server and chat. Interactive on a terminal; when stdin is
not a terminal it reads commands and messages line by line and prints one
event per line (--json for JSON lines).

Options:
  --user NAME          who you are (on a terminal, asked when not given)
  --server HOST:PORT   the server (default 127.0.0.1:9876); for a cluster, its
                       nodes as HOST:PORT,HOST:PORT,... (at most 16): tried in
                       order, and on losing one the client goes to the next
  --keys DIR           key directory (default $IM_KEYS or keys)
  --json               print events as JSON lines
  --relay              run peer sessions through the server relay
  --listen HOST        address to listen on when hosting (default 127.0.0.1)
  --listen-port N      port to listen on when hosting (default 0: any free one)
  --advertise HOST:PORT  address to tell peers instead (e.g. behind NAT)
  --heartbeat MS       heartbeat interval in ms, 50..2000 (default 2000)
  --no-reconnect       exit when the server goes away instead of retrying
  --reconnect-base MS  first reconnect delay in ms, doubled up to 30 s (default 1000)
  --no-color           no colours (also when NO_COLOR is set)
  -h, --help           this help

Commands: !session host, !session <user>, !list, !disconnect, !whoami,
!help, !quit. Anything else is sent to your peer. Input lines are limited
to 32 KiB (32768 bytes). On a terminal Ctrl-C clears the line; Ctrl-C
again, or Ctrl-D on an empty line, quits (as !quit does).

Exit codes: 0 done; 1 failure (login refused, connection ended for good);
2 bad command line; 3 (stdin not a terminal) some line failed: it was
answered with an error (a refused !session, "Not sent", an unknown
command), was skipped as longer than 32 KiB, or a message was not
delivered; 128+N ended by signal N (SIGHUP 129, SIGINT 130, SIGTERM 143).
`;

/**
 * Exit code of a script (stdin not a terminal) in which some line failed;
 * see `Terminal.failures` in lib/ui/terminal.ts (issue 11 item 6).
 */
export const EXIT_SOME_FAILED = 3;

/**
 * Longest input line: room for a 30 KB message. A line that fits but
 * encodes to more than `MAX_MESSAGE_BYTES` of lib/client/peer_session.ts (quotes and backslashes
 * are escaped) is refused when sent, with `message-too-large`.
 */
const MAX_INPUT_LINE_BYTES = 32 * 1024;

/** What a person who quit (`!quit`, Ctrl-D, Ctrl-C twice) reads last. */
export const GOODBYE = "Logged out. Bye!";

/** How long logging out may take after the user or a signal ended the chat. */
const QUIT_MS = 3000;

/** Most nodes `--server` takes (PROTOCOL.md 11.7). */
export const MAX_SERVERS = 16;

/**
 * `--server`: one `host:port`, or a cluster's nodes separated by commas
 * (PROTOCOL.md 11.7), each checked as one address is; spaces around an
 * entry are allowed, a node given twice or more than {@link MAX_SERVERS}
 * are not.
 * @param text the flag's value
 * @returns the addresses, in order
 * @throws {UsageError} `bad-flag`, naming the entry at fault
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serverList } from "./chat.ts";
 * assert.deepEqual(serverList("a:1,b:2").map((s) => s.port), [1, 2]);
 * ```
 */
export function serverList(text: string): ServerAddress[] {
  const entries = text.split(",");
  if (entries.length === 1) return [hostPort("--server", text)];
  if (entries.length > MAX_SERVERS) {
    throw new UsageError(
      "bad-flag",
      `Invalid --server: ${entries.length} servers, at most ${MAX_SERVERS}`,
    );
  }
  const seen = new Set<string>();
  return entries.map((entry) => {
    const a = hostPort("--server entry", entry.trim());
    // Host names are case-insensitive; an IPv6 address is written in hex.
    const key = `${a.host.toLowerCase()}:${a.port}`;
    if (seen.has(key)) {
      throw new UsageError(
        "bad-flag",
        `Invalid --server: "${
          entry.trim().slice(0, 60)
        }" is given more than once`,
      );
    }
    seen.add(key);
    return a;
  });
}

const OPTIONS = {
  user: { type: "string" },
  server: { type: "string" },
  keys: { type: "string" },
  json: { type: "boolean" },
  relay: { type: "boolean" },
  listen: { type: "string" },
  "listen-port": { type: "string" },
  advertise: { type: "string" },
  heartbeat: { type: "string" },
  "no-reconnect": { type: "boolean" },
  "reconnect-base": { type: "string" },
  "no-color": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/**
 * Run `im chat`.
 * @param args arguments after `chat`
 * @returns exit code
 */
export async function runChat(args: string[]): Promise<number> {
  let json = args.includes("--json"); // until the flags are parsed
  try {
    const v = parseFlags(args, OPTIONS, "im chat");
    json = v.json ?? false;
    if (v.help) {
      console.log(CHAT_USAGE.trimEnd());
      return 0;
    }
    return await chat(v);
  } catch (e) {
    // With --json the error that ends im chat (a refused connection, a
    // login that failed, a missing key) is also an `error` event on stdout,
    // for a script that reads only stdout; main.ts still prints the line
    // and the hint on stderr (issue 11 item 10).
    if (json) console.log(eventToJson(errorAsEvent(e)));
    throw e;
  }
}

/** An error that ends `im chat` as an `error` event. */
function errorAsEvent(e: unknown): UiEvent {
  return {
    kind: "error",
    code: isImError(e) ? e.code : "internal",
    text: isImError(e)
      ? e.message
      : `internal error: ${(e as Error)?.message ?? String(e)}`,
    at: Date.now(),
  };
}

type ChatFlags = ReturnType<typeof parseFlags<typeof OPTIONS>>;

/** `im chat` once the flags are read. */
async function chat(v: ChatFlags): Promise<number> {
  if (v.user !== undefined) {
    const name = v.user;
    flagValue(() => checkUsername(name));
  } else if (!Deno.stdin.isTerminal()) {
    // A script must say who it is; only a person is asked.
    throw new UsageError(
      "bad-flag",
      'Missing "--user NAME"',
      'run "im chat --help"',
    );
  }
  const servers = serverList(v.server ?? "127.0.0.1:9876");
  if (v.advertise !== undefined) hostPort("--advertise", v.advertise);
  const heartbeatMs = intFlag(
    "--heartbeat",
    v.heartbeat,
    DEFAULT_HEARTBEAT_MS,
    MIN_HEARTBEAT_MS,
    MAX_HEARTBEAT_MS,
  );
  const listenPort = intFlag("--listen-port", v["listen-port"], 0, 0, 65535);
  const reconnectBaseMs = intFlag(
    "--reconnect-base",
    v["reconnect-base"],
    1000,
    10,
    30_000,
  );
  const keyDir = v.keys ?? defaultKeyDir();
  let user: string;
  if (v.user !== undefined) {
    user = v.user;
  } else {
    const asked = await askUsername(keyDir);
    if (typeof asked === "number") return asked;
    user = asked;
  }
  traceStart("flags read");
  // The key pair; mailbox keys, seen ids, pending receipts (PROTOCOL.md
  // section 9.1); the rooms (10.6): read at once (issue 15), and of their
  // failures the first in this order is the one reported.
  const [keys, mailVault, roomVault] = await allSettledOrThrow([
    loadUserKeys(keyDir, user),
    openMailVault(keyDir, user),
    openRoomVault(keyDir, user),
  ]);
  traceStart("keys and vaults loaded");
  const interactive = Deno.stdin.isTerminal();
  const color = !v["no-color"] && shouldUseColor({
    noColor: Deno.env.get("NO_COLOR") !== undefined,
    isTty: Deno.stdout.isTerminal(),
  });
  let client: ChatClient | undefined;
  // A script's terminal is on Deno's own stdin and stdout; a person's is on
  // Node's (raw mode, the window's width and its changes), loaded only then
  // (issue 15: the Node streams cost the start about 10 ms).
  const stdio = interactive
    ? (await import("node:process")).default
    : { stdin: denoStdin(), stdout: denoStdout() };
  const terminal = createTerminal({
    input: stdio.stdin,
    output: stdio.stdout,
    interactive,
    json: v.json ?? false,
    color,
    self: user,
    names: () => client?.names ?? [],
    rooms: () => client?.roomNames ?? [],
    maxLineBytes: MAX_INPUT_LINE_BYTES,
  });
  // From here on the terminal is restored on every way out: SIGTERM, SIGHUP,
  // SIGINT, a crash anywhere in the process, a fatal error, an error thrown
  // below (issue 11 item 4).
  const guard = guardTerminal(terminal);
  traceStart("terminal made");
  try {
    const c = await Promise.race([
      ChatClient.start({
        user,
        identity: keys.identity,
        pinnedServer: keys.pinnedServer,
        // Partners' keys, pinned on first use (PROTOCOL.md section 6).
        peerPins: peerPinStore(keyDir, user),
        mailVault,
        roomVault,
        // The first node; the link names the one it is logged in to.
        serverHost: servers[0]!.host,
        serverPort: servers[0]!.port,
        servers,
        ui: terminal,
        heartbeatMs,
        relay: v.relay ?? false,
        // A script's lines act in order; a person gets fresh Tab completion.
        waitForReplies: !interactive,
        namesRefreshMs: interactive ? 15_000 : 0,
        reconnect: !v["no-reconnect"],
        reconnectBaseMs,
        listenPort,
        ...(v.listen === undefined ? {} : { listenHost: v.listen }),
        ...(v.advertise === undefined ? {} : { advertise: v.advertise }),
      }),
      guard.crashed,
    ]);
    client = c;
    let code = 0;
    c.onFatal = () => {
      code = 1;
      terminal.close();
    };
    const talk = async () => {
      for await (const line of terminal.lines()) {
        if (!(await c.handleLine(line))) return;
      }
      // End of a script's input: the mail that waited at login is shown
      // before it logs out (PROTOCOL.md 9.8), as a command's answer is.
      if (!interactive && c.fatal === undefined) await c.mailSynced();
    };
    try {
      await Promise.race([talk(), guard.crashed]);
    } finally {
      // Log out, but a stuck network must not hold the exit forever.
      await within(c.quit(), QUIT_MS, undefined);
    }
    if (guard.signal !== null) return signalExitCode(guard.signal);
    if (interactive && code === 0) {
      // !quit, Ctrl-D or Ctrl-C: the user left on purpose (issue 11 item 8).
      terminal.close();
      terminal.print({ kind: "system", text: GOODBYE, at: Date.now() });
    }
    // A script learns from the exit code whether every line did its job.
    if (code === 0 && !interactive && terminal.failures > 0) {
      return EXIT_SOME_FAILED;
    }
    return code;
  } finally {
    terminal.close();
    guard.dispose();
  }
}

/**
 * Ask `Username:` on the terminal (issue 11 item 11), Tab completing the
 * users of the key directory, until a valid name is typed.
 * @returns the name, or the exit code when the user gave up (Ctrl-C,
 *   Ctrl-D: 1) or a signal came (128+N)
 * @throws the error of a crash while asking
 */
async function askUsername(dir: string): Promise<string | number> {
  const names = await listUsers(dir);
  const process = (await import("node:process")).default;
  // The question goes where the user looks: stdout unless it is redirected.
  const output = Deno.stdout.isTerminal() ? process.stdout : process.stderr;
  for (;;) {
    const q = ask({
      input: process.stdin,
      output,
      prompt: "Username: ",
      choices: () => names,
    });
    const guard = guardTerminal(q);
    let answer: string | null;
    try {
      answer = await Promise.race([q.answer, guard.crashed]);
    } finally {
      q.close();
      guard.dispose();
    }
    if (guard.signal !== null) return signalExitCode(guard.signal);
    if (answer === null) return 1;
    const name = answer.trim();
    if (isValidUsername(name)) return name;
    if (name !== "") {
      output.write(
        `Invalid username "${
          sanitizeText(name.slice(0, 40))
        }": expected 1-32 characters of A-Z a-z 0-9 _ -${
          names.length > 0 ? `; here: ${names.join(", ")}` : ""
        }\n`,
      );
    }
  }
}
