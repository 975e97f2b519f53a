// Stands in for undici in the Action bundles. @actions/http-client imports undici only for
// getAgentDispatcher() (fetch through a proxy), which neither @actions/core nor
// @actions/tool-cache calls as the Action uses them; the ID token is fetched with node:https.
// Leaving undici out takes ~0.8 MB off dist/main.js and dist/post.js, which the runner
// parses on every run.
export class ProxyAgent {
  constructor() {
    throw new Error("idbot: undici is not bundled into the Action (getAgentDispatcher is unused)");
  }
}
