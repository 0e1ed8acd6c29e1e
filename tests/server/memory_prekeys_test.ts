import { MemoryPrekeys } from "../../lib/server/mod.ts";
import { prekeysContract } from "./prekeys_contract.ts";

prekeysContract("MemoryPrekeys", () => new MemoryPrekeys());
