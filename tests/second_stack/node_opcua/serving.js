// What the test servers share: start, say READY on stdout, stop on SIGTERM, and report a failed
// start on stderr with exit code 1.
"use strict";
const opcua = require("node-opcua");

// An open, anonymous server on 127.0.0.1:<port>/plc, initialized: the second stack as the
// connector's tests meet most PLCs before they are locked down.
async function openServer(port, productName) {
    const server = new opcua.OPCUAServer({
        port,
        hostname: "127.0.0.1",
        resourcePath: "/plc",
        securityPolicies: [opcua.SecurityPolicy.None],
        securityModes: [opcua.MessageSecurityMode.None],
        allowAnonymous: true,
        buildInfo: { productName },
    });
    await server.initialize();
    return server;
}

async function serve(server, port) {
    await server.start();
    process.stdout.write(`READY ${port}\n`);
    process.on("SIGTERM", async () => {
        await server.shutdown(0);
        process.exit(0);
    });
}

function runMain(main) {
    main().catch((err) => {
        process.stderr.write(`${err.stack || err}\n`);
        process.exit(1);
    });
}

module.exports = { openServer, serve, runMain };
