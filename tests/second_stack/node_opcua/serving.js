// What the test servers share: start, say READY on stdout, stop on SIGTERM, and report a failed
// start on stderr with exit code 1.
"use strict";

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

module.exports = { serve, runMain };
