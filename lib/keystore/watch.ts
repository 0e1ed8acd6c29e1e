/**
 * Watching the server's directory of client public keys
 * (`server/clients/`, layout in `layout.ts`), so that an enrollment takes
 * effect on a running server without a signal. Where the platform cannot
 * watch, nothing happens and SIGHUP remains the way.
 * @module
 */

import { KEY_LAYOUT as L, keyPath } from "./layout.ts";

/**
 * Call `onChange` (debounced) whenever a file in the server's directory of
 * client public keys changes, so an enrollment takes effect without a
 * signal. Where the platform cannot watch, it does nothing and SIGHUP
 * remains the way.
 * @param dir the key directory
 * @param onChange what to do; called at most once per `debounceMs`
 * @param debounceMs quiet time after the last change
 * @returns a handle whose `close()` stops watching
 * @example
 * ```ts ignore
 * const watcher = watchClientDirectory("keys", () => console.log("changed"));
 * watcher.close();
 * ```
 */
export function watchClientDirectory(
  dir: string,
  onChange: () => void,
  debounceMs = 250,
): { close(): void } {
  let watcher: Deno.FsWatcher;
  try {
    watcher = Deno.watchFs(keyPath(dir, L.clientsDir), { recursive: false });
  } catch {
    return { close() {} };
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const loop = (async () => {
    try {
      for await (const _event of watcher) {
        clearTimeout(timer);
        timer = setTimeout(onChange, debounceMs);
      }
    } catch {
      // The watcher was closed or the directory vanished: stop quietly.
    }
  })();
  return {
    close() {
      clearTimeout(timer);
      try {
        watcher.close();
      } catch {
        // Already closed.
      }
      void loop;
    },
  };
}
