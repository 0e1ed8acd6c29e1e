/**
 * The trace of a client process's start (issue 15: a fresh `im chat` to its
 * `Logged in` line). With `IM_TRACE_START` set in the environment, each
 * step writes one line to stderr, `im-trace <ms> <label>`: the
 * milliseconds since the process's time origin (`performance.now()`) and
 * the step just reached. `bench --only start` reads them to say where the
 * time goes. Without the variable, or without permission to read it,
 * nothing is written; stdout is never touched.
 *
 * @example
 * ```ts
 * import { traceStart } from "./start.ts";
 * traceStart("example"); // silent unless IM_TRACE_START is set
 * ```
 * @module
 */

/** Is the start traced? Read once, at the first step. */
let tracing: boolean | undefined;

/**
 * With `IM_TRACE_START` set, write `im-trace <ms> <label>` to stderr.
 * @param label the step just reached
 */
export function traceStart(label: string): void {
  if (tracing === undefined) {
    const env = { name: "env", variable: "IM_TRACE_START" } as const;
    tracing = Deno.permissions.querySync(env).state === "granted" &&
      Deno.env.get("IM_TRACE_START") !== undefined;
  }
  if (!tracing) return;
  const line = `im-trace ${performance.now().toFixed(2)} ${label}\n`;
  Deno.stderr.writeSync(new TextEncoder().encode(line));
}
