import { MemoryStore } from "../../lib/server/mod.ts";
import { storeContract } from "./store_contract.ts";

storeContract("MemoryStore", (clock) => new MemoryStore({ now: clock }));
