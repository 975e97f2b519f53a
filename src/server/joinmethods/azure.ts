// The `azure` join method. (Being written: see issue 8.)
import { z } from "zod";
import type { ClaimJoinMethod } from "./method.ts";

export const AzureTokenSpecSchema = z.strictObject({});
export type AzureTokenSpec = z.output<typeof AzureTokenSpecSchema>;

export const azureMethod: ClaimJoinMethod<AzureTokenSpec> = {
  issuer: () => "azure",
  async check() {
    throw new Error("the azure join method is not implemented yet");
  },
  rules: () => [],
  globFields: new Set(),
  keep: (c) => c,
  subject: () => "azure",
  shownClaims: [],
};
