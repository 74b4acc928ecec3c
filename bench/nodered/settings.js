// Node-RED settings for bench/bench_nodered_modbus.py: everything the run needs comes from the
// environment the bench sets (its temporary user directory, free loopback ports), so this file
// and flow.json stay fixed. The editor is on (as a user runs Node-RED) but bound to loopback
// only, without admin auth; logging at warn so that the log costs nothing measurable.
module.exports = {
    uiHost: "127.0.0.1",
    uiPort: parseInt(process.env.NODE_RED_PORT, 10),
    userDir: process.env.NODE_RED_USER_DIR,
    flowFile: process.env.NODE_RED_FLOW_FILE,
    credentialSecret: false,
    logging: { console: { level: "warn", metrics: false, audit: false } },
    diagnostics: { enabled: false },
    telemetry: { enabled: false },
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
    editorTheme: { tours: false },
};
