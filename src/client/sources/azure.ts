// The azure proof source. (Being written: see issue 8.)
import type { CloudSourceOptions, ProofSource } from "./cloud.ts";

export function azureProofSource(_opts: CloudSourceOptions): ProofSource {
  return async () => {
    throw new Error("the azure join method is not implemented yet");
  };
}
