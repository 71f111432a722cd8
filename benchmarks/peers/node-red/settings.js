// Node-RED settings for the end-to-end benchmark peer (benchmarks/compare.py runs it headless).
// Loopback only, no editor, no admin API, no telemetry or update checks: nothing leaves the machine.
// The flow reads its drop folder, sink URL, batch size and requests in flight from the environment.
const crypto = require("crypto");

module.exports = {
    uiHost: "127.0.0.1",
    uiPort: parseInt(process.env.NODE_RED_PORT || "1880", 10),
    httpAdminRoot: false,
    httpNodeRoot: false,
    disableEditor: true,
    credentialSecret: false,
    flowFilePretty: false,
    // the function nodes hash idempotency keys as the gateway does (sha256, first 32 hex characters)
    functionGlobalContext: { crypto: crypto },
    functionExternalModules: false,
    diagnostics: { enabled: false, ui: false },
    runtimeState: { enabled: false, ui: false },
    telemetry: { enabled: false, updateNotification: false },
    externalModules: { autoInstall: false, palette: { allowInstall: false }, modules: { allowInstall: false } },
    logging: { console: { level: "info", metrics: false, audit: false } },
    exportGlobalContextKeys: false,
};
