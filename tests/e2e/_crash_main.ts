/**
 * main.ts with a crash on demand, for the pty test of issue 11 item 4: on
 * SIGUSR1 an exception is thrown from a timer, uncaught, while `im chat`
 * runs as usual. What the user must see is one error line and a terminal
 * in its normal modes again.
 * @module
 */

import { main } from "../../main.ts";

Deno.addSignalListener("SIGUSR1", () => {
  setTimeout(() => {
    throw new Error("injected crash");
  }, 0);
});
Deno.exit(await main(Deno.args));
