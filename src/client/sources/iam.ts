// The iam proof source. (Being written: see issue 8.)
import type { CloudSourceOptions, ProofSource } from "./cloud.ts";

export function iamProofSource(_opts: CloudSourceOptions): ProofSource {
  return async () => {
    throw new Error("the iam join method is not implemented yet");
  };
}
