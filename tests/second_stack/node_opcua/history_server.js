// node-opcua historizing its variables, for the connector's history backfill test (an open
// endpoint).
//
// Objects/line (ns=1) holds ITEMS Doubles `v0`..`v<ITEMS-1>` (node ids ns=1;s=line.v<i>), each
// set to a new value every 100 ms and historized in memory by node-opcua
// (installHistoricalDataNode, the last 5,000 values each), so HistoryRead gives back what a
// client missed. Environment: PORT, ITEMS (default 5). Prints "READY <port>" once listening;
// stops on SIGTERM.
"use strict";
const opcua = require("node-opcua");
const { openServer, serve, runMain } = require("./serving.js");

const PERIOD_MS = 100;
const KEPT = 5000;

async function main() {
    const port = Number(process.env.PORT);
    const items = Number(process.env.ITEMS || 5);
    const server = await openServer(port, "shopfloor-test-node-opcua-history");
    const addressSpace = server.engine.addressSpace;
    const ns = addressSpace.getOwnNamespace();
    const line = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "line" });
    const variables = [];
    for (let i = 0; i < items; i++) {
        const variable = ns.addVariable({
            componentOf: line,
            browseName: `v${i}`,
            nodeId: `s=line.v${i}`,
            dataType: "Double",
            accessLevel: "CurrentRead | HistoryRead",
            userAccessLevel: "CurrentRead | HistoryRead",
            historizing: true,
        });
        addressSpace.installHistoricalDataNode(variable, { maxOnlineValues: KEPT });
        variables.push(variable);
    }
    let tick = 0;
    const update = () => {
        tick += 1;
        const now = new Date();
        variables.forEach((variable, i) =>
            variable.setValueFromSource(
                { dataType: opcua.DataType.Double, value: i * 1000 + tick },
                opcua.StatusCodes.Good,
                now,
            ),
        );
    };
    update();
    const timer = setInterval(update, PERIOD_MS);
    server.on("post_shutdown", () => clearInterval(timer));
    await serve(server, port);
}

runMain(main);
