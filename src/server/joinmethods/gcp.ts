// The `gcp` join method. (Being written: see issue 8.)
import { z } from "zod";
import type { ClaimJoinMethod } from "./method.ts";

export const GcpTokenSpecSchema = z.strictObject({});
export type GcpTokenSpec = z.output<typeof GcpTokenSpecSchema>;

export const gcpMethod: ClaimJoinMethod<GcpTokenSpec> = {
  issuer: () => "gcp",
  async check() {
    throw new Error("the gcp join method is not implemented yet");
  },
  rules: () => [],
  globFields: new Set(),
  keep: (c) => c,
  subject: () => "gcp",
  shownClaims: [],
};
