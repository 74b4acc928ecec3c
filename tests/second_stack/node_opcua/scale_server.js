// An independent OPC UA server for plant-scale tests and benchmarks (node-opcua, not written by us).
//
// ITEMS doubles, ns=1;s=v0 .. v<ITEMS-1>, all changing once a second: at each whole second every
// value becomes tick + index / ITEMS, stamped with that second as its source timestamp, so that a
// historian can count each second's changes exactly. Open endpoint (SecurityPolicy None),
// anonymous login: this server is about capacity, server.js about security.
//
// Environment: PORT, ITEMS, and the limits it announces in Server_ServerCapabilities and
// enforces (node-opcua refuses a request past them): MAX_MONITORED_ITEMS_PER_CALL,
// MAX_MONITORED_ITEMS_PER_SUBSCRIPTION, MAX_SUBSCRIPTIONS_PER_SESSION, MAX_SESSIONS (unset: the
// node-opcua defaults). NO_CAPABILITIES=1 deletes the capability variables from the address space,
// like a server that exposes none. REPORT_PUBLISH=1 prints "PUBLISH <n>" every 100 ms: the most
// Publish requests any session has queued on the server. Prints "READY <port>" once listening;
// stops on SIGTERM.
"use strict";
const opcua = require("node-opcua");
const { serve, runMain } = require("./serving.js");

function limit(name) {
    return process.env[name] ? Number(process.env[name]) : undefined;
}

function hideCapabilities(addressSpace) {
    const capabilities = addressSpace.rootFolder.objects.server.serverCapabilities;
    const limits = capabilities.getComponentByName("OperationLimits");
    for (const node of limits ? limits.getComponents() : []) {
        addressSpace.deleteNode(node);
    }
    for (const name of [
        "MaxSessions",
        "MaxSubscriptions",
        "MaxMonitoredItems",
        "MaxSubscriptionsPerSession",
        "MaxMonitoredItemsPerSubscription",
    ]) {
        const node = capabilities.getChildByName(name);
        if (node) {
            addressSpace.deleteNode(node);
        }
    }
}

async function main() {
    const port = Number(process.env.PORT);
    const items = Number(process.env.ITEMS);
    const capabilities = {
        operationLimits: { maxMonitoredItemsPerCall: limit("MAX_MONITORED_ITEMS_PER_CALL") },
        maxMonitoredItemsPerSubscription: limit("MAX_MONITORED_ITEMS_PER_SUBSCRIPTION"),
        maxSubscriptionsPerSession: limit("MAX_SUBSCRIPTIONS_PER_SESSION"),
        maxSessions: limit("MAX_SESSIONS"),
    };
    for (const [key, value] of Object.entries(capabilities)) {
        if (value === undefined) delete capabilities[key];
    }
    if (capabilities.operationLimits.maxMonitoredItemsPerCall === undefined) {
        delete capabilities.operationLimits;
    }
    const server = new opcua.OPCUAServer({
        port,
        hostname: "127.0.0.1",
        resourcePath: "/plc",
        securityPolicies: [opcua.SecurityPolicy.None],
        securityModes: [opcua.MessageSecurityMode.None],
        allowAnonymous: true,
        serverCapabilities: capabilities,
        buildInfo: { productName: "shopfloor-scale-node-opcua" },
    });
    await server.initialize();
    const addressSpace = server.engine.addressSpace;
    const ns = addressSpace.getOwnNamespace();
    const folder = ns.addFolder(addressSpace.rootFolder.objects, { browseName: "scale" });
    const variables = [];
    for (let index = 0; index < items; index++) {
        variables.push(
            ns.addVariable({
                componentOf: folder,
                browseName: `v${index}`,
                nodeId: `s=v${index}`,
                dataType: "Double",
                minimumSamplingInterval: 0, // reported on change (exception-based) if asked for 0
                value: new opcua.Variant({ dataType: opcua.DataType.Double, value: 0 }),
            }),
        );
    }
    if (process.env.NO_CAPABILITIES === "1") {
        hideCapabilities(addressSpace);
    }
    const tick = () => {
        const now = Date.now();
        const second = Math.floor(now / 1000);
        const stamp = new Date(second * 1000);
        for (let index = 0; index < items; index++) {
            variables[index].setValueFromSource(
                new opcua.Variant({ dataType: opcua.DataType.Double, value: second + index / items }),
                opcua.StatusCodes.Good,
                stamp,
            );
        }
        setTimeout(tick, (second + 1) * 1000 - Date.now());
    };
    tick();
    if (process.env.REPORT_PUBLISH === "1") {
        setInterval(() => {
            const queued = server.engine.getSessions().map((s) => s.publishEngine.pendingPublishRequestCount);
            process.stdout.write(`PUBLISH ${Math.max(0, ...queued)}\n`);
        }, 100);
    }
    await serve(server, port);
}

runMain(main);
