// The gcp proof source. (Being written: see issue 8.)
import type { CloudSourceOptions, ProofSource } from "./cloud.ts";

export function gcpProofSource(_opts: CloudSourceOptions): ProofSource {
  return async () => {
    throw new Error("the gcp join method is not implemented yet");
  };
}
